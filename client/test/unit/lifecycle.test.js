// Keepalive, the switch-over before the 2-hour limit, and token refresh.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { fakeJwt } from "./fakes.js";
import { connected, settle, setup, waitOut } from "./helpers.js";

const MIN = 60 * 1000;
const START_S = 1_700_000_000; // the fake clock's start, in seconds

describe("keepalive", () => {
  it("pings after pingIntervalMs without a frame sent, and swallows the pong", async () => {
    const env = setup({ pingIntervalMs: 4 * MIN });
    const ws = await connected(env);
    await env.clock.advance(4 * MIN - 1);
    assert.deepEqual(ws.sent, []);
    await env.clock.advance(1);
    assert.deepEqual(ws.frames(), [{ type: "ping" }]);
    ws.deliver({ type: "pong" });
    assert.deepEqual(env.messages, [], "the keepalive's pong is the client's business");
    await env.clock.advance(4 * MIN);
    assert.equal(ws.sent.length, 2, "and again four minutes later");
  });

  it("counts every frame sent: no ping while the user is chatting", async () => {
    const env = setup({ pingIntervalMs: 4 * MIN });
    const ws = await connected(env);
    for (let i = 0; i < 5; i += 1) {
      await env.clock.advance(3 * MIN);
      env.socket.send({ body: `m${i}` });
    }
    assert.equal(ws.frames().filter((f) => f.type === "ping").length, 0);
    await env.clock.advance(4 * MIN);
    assert.equal(ws.frames().at(-1).type, "ping");
  });

  it("keeps a socket from ever being idle for 10 minutes (API Gateway's limit)", async () => {
    const env = setup();
    const ws = await connected(env);
    let lastSent = env.clock.now();
    let longestIdle = 0;
    const originalSend = ws.send.bind(ws);
    ws.send = (data) => {
      longestIdle = Math.max(longestIdle, env.clock.now() - lastSent);
      lastSent = env.clock.now();
      originalSend(data);
      if (JSON.parse(data).type === "ping") queueMicrotask(() => ws.deliver({ type: "pong" }));
    };
    await env.clock.advance(60 * MIN);
    assert.ok(ws.sent.length >= 14, `${ws.sent.length} pings in an hour`);
    assert.ok(longestIdle < 10 * MIN, `longest idle ${longestIdle} ms`);
    assert.equal(env.sockets.length, 1);
  });

  it("a ping with no answer within pongTimeoutMs means a dead socket: reconnect", async () => {
    const env = setup({ pingIntervalMs: 4 * MIN, pongTimeoutMs: 30_000 });
    const ws = await connected(env);
    await env.clock.advance(4 * MIN);
    await env.clock.advance(30_000 - 1);
    assert.equal(env.socket.state, "open");
    await env.clock.advance(1);
    assert.equal(env.socket.state, "reconnecting");
    assert.match(env.states.at(-1).reason, /keepalive/);
    assert.equal(ws.closedWith.code, 4000);
    await waitOut(env);
    assert.equal(env.sockets.length, 2);
  });

  it("any frame received counts as the answer", async () => {
    const env = setup({ pingIntervalMs: 4 * MIN, pongTimeoutMs: 30_000 });
    await connected(env);
    await env.clock.advance(4 * MIN + 10_000);
    env.last().deliver({ type: "message", message: { id: 1 } });
    await env.clock.advance(60_000);
    assert.equal(env.socket.state, "open");
  });
});

describe("switch-over before the 2-hour limit", () => {
  const LIFETIME = 120 * MIN;

  async function switched(options = {}) {
    const env = setup({ pingIntervalMs: 4 * MIN, tokens: ["t1", "t2", "t3"], ...options });
    const old = await connected(env);
    old.send = ((send) => (data) => {
      send(data);
      if (JSON.parse(data).type === "ping") queueMicrotask(() => old.deliver({ type: "pong" }));
    })(old.send.bind(old));
    await env.clock.advance(LIFETIME - 5 * MIN - 1);
    assert.equal(env.sockets.length, 1, "no new socket before lifetime - switchOverBeforeMs");
    await env.clock.advance(1);
    assert.equal(env.sockets.length, 2, "a new socket 5 minutes before the limit");
    return { env, old, fresh: env.last() };
  }

  it("opens the new socket first, then closes the old; the state stays open", async () => {
    const { env, old, fresh } = await switched();
    assert.equal(fresh.url.searchParams.get("token"), "t2", "a fresh token for the new socket");
    assert.equal(old.closedWith, null, "the old socket is not closed before the new one is open");
    env.socket.send({ body: "before" });
    assert.equal(old.frames().at(-1).body, "before", "frames go to the old socket until the new one opens");
    fresh.accept();
    await settle();
    assert.equal(old.closedWith.code, 1000);
    env.socket.send({ body: "after" });
    assert.deepEqual(fresh.frames(), [{ body: "after" }]);
    assert.deepEqual(
      env.states.map((s) => s.state),
      ["connecting", "open"],
      "no state change for the user",
    );
  });

  it("loses no frame and duplicates none while both sockets receive", async () => {
    const { env, old, fresh } = await switched();
    const pending = env.socket.request({ body: "in flight" });
    const id = old.frames().at(-1).id;
    fresh.accept();
    await settle();
    assert.equal(old.closedWith, null, "the old socket stays while a request sent on it waits");
    const status = { type: "booking_status", status: "confirmed" };
    // Fan-outs already under way reach both sockets, in either order.
    fresh.deliver(status);
    old.deliver(status);
    old.deliver({ type: "reaction", message_id: 1, reactions: { "❤️": ["bob"] } });
    fresh.deliver({ type: "reaction", message_id: 1, reactions: { "❤️": ["bob"] } });
    fresh.deliver({ type: "message", message: { id: 5, body: "in flight" } }); // the broadcast copy
    old.deliver({ type: "message", message: { id: 5, body: "in flight" }, ref: id }); // the sender's copy
    old.deliver({ type: "typing", user_id: "bob" }); // only the old socket got this one
    assert.equal((await pending).message.id, 5);
    await settle();
    assert.equal(old.closedWith?.code, 1000, "closed once its request was answered");
    fresh.deliver({ type: "booking_status", status: "confirmed" }); // a new push, after the overlap
    assert.deepEqual(
      env.messages.map((m) => m.type),
      ["booking_status", "reaction", "message", "typing", "booking_status"],
    );
  });

  it("closes the old socket after switchOverDrainMs even when a request on it is never answered", async () => {
    const { env, old, fresh } = await switched({ switchOverDrainMs: 5000 });
    const pending = env.socket.request({ body: "lost" }, { timeoutMs: 60_000 });
    fresh.accept();
    await settle();
    const rejected = assert.rejects(pending, (err) => err.code === "connection_lost");
    await env.clock.advance(5000);
    await rejected;
    assert.equal(old.closedWith.code, 1000);
  });

  it("keeps the old socket when the new one fails, and tries again", async () => {
    const { env, old, fresh } = await switched();
    fresh.refuse(502);
    await settle();
    assert.equal(env.socket.state, "open");
    assert.equal(old.closedWith, null);
    await env.clock.advance(500); // the backoff's first step (stable by now: attempt 0)
    assert.equal(env.sockets.length, 3);
    env.last().accept();
    await settle();
    assert.equal(old.closedWith.code, 1000);
  });

  it("the old socket closing first (the limit) makes the new one the reconnect", async () => {
    const { env, old, fresh } = await switched();
    old.drop(1001, "Going away");
    await settle();
    assert.equal(env.socket.state, "reconnecting");
    assert.equal(env.sockets.length, 2, "no second new socket");
    env.socket.send({ body: "queued" });
    fresh.accept();
    await settle();
    assert.equal(env.socket.state, "open");
    assert.deepEqual(fresh.frames(), [{ body: "queued" }]);
  });

  it("a switched-over socket switches again two hours later", async () => {
    const { env, fresh } = await switched();
    fresh.accept();
    await settle();
    fresh.send = ((send) => (data) => {
      send(data);
      if (JSON.parse(data).type === "ping") queueMicrotask(() => fresh.deliver({ type: "pong" }));
    })(fresh.send.bind(fresh));
    await env.clock.advance(LIFETIME - 5 * MIN);
    assert.equal(env.sockets.length, 3);
  });
});

describe("token refresh", () => {
  const jwt = (name, expInS) => fakeJwt({ sub: "alice", name, exp: START_S + expInS });

  async function refreshing(tokens, options = {}) {
    const env = setup({ tokens, ...options });
    const ws = await connected(env);
    return { env, ws };
  }

  it("an unauthorized answer: fetch a token, send auth, resend the request once after authenticated", async () => {
    const { env, ws } = await refreshing(["old", "new"]);
    const reply = env.socket.request({ body: "hello" });
    const { id } = ws.frames()[0];
    ws.deliver({ type: "error", code: "unauthorized", message: "the token is invalid or expired", retryable: false, ref: id });
    await settle();
    const auth = ws.frames()[1];
    assert.equal(auth.type, "auth");
    assert.equal(auth.token, "new");
    assert.notEqual(auth.id, undefined);
    assert.equal(ws.sent.length, 2, "the request waits for the new token");
    ws.deliver({ type: "authenticated", ref: auth.id });
    await settle();
    assert.deepEqual(ws.frames()[2], { body: "hello", id });
    ws.deliver({ type: "message", message: { id: 1, body: "hello" }, ref: id });
    assert.equal((await reply).message.id, 1);
    assert.deepEqual(env.errors, []);
    assert.deepEqual(env.messages.map((m) => m.type), ["message"], "auth answers are not messages");
  });

  it("retries once only: a second unauthorized rejects the request", async () => {
    const { env, ws } = await refreshing(["old", "new", "newer"]);
    const reply = env.socket.request({ body: "hello" });
    const { id } = ws.frames()[0];
    ws.deliver({ type: "error", code: "unauthorized", message: "expired", ref: id });
    await settle();
    ws.deliver({ type: "authenticated", ref: ws.frames()[1].id });
    await settle();
    ws.deliver({ type: "error", code: "unauthorized", message: "still no", ref: id });
    await assert.rejects(reply, (err) => err.code === "unauthorized" && err.frame.message === "still no");
  });

  it("a refused auth: the request fails with the unauthorized frame, an error event says why", async () => {
    const { env, ws } = await refreshing(["old", "new"]);
    const reply = env.socket.request({ body: "hello" });
    ws.deliver({ type: "error", code: "unauthorized", message: "expired", ref: ws.frames()[0].id });
    await settle();
    const auth = ws.frames()[1];
    ws.deliver({ type: "error", code: "forbidden", message: "another user", retryable: false, ref: auth.id });
    await assert.rejects(reply, (err) => err.code === "unauthorized");
    assert.equal(env.errors.at(-1).code, "forbidden");
    assert.equal(ws.sent.length, 2, "not resent");
  });

  it("a provider that hangs during a refresh: token_unavailable after connectTimeoutMs, the request fails", async () => {
    let calls = 0;
    const env = setup({ connectTimeoutMs: 5000, token: () => (++calls === 1 ? Promise.resolve("old") : new Promise(() => {})) });
    const ws = await connected(env);
    const reply = env.socket.request({ body: "hello" }, { timeoutMs: 60_000 });
    ws.deliver({ type: "error", code: "unauthorized", message: "expired", ref: ws.frames()[0].id });
    const rejected = assert.rejects(reply, (err) => err.code === "unauthorized");
    await env.clock.advance(5000);
    await rejected;
    assert.equal(env.errors.at(-1).code, "token_unavailable");
    assert.equal(ws.sent.length, 1, "no auth, no resend");
    assert.equal(env.socket.state, "open");
  });

  it("the provider returning the same token: nothing to refresh, the request fails", async () => {
    const { env, ws } = await refreshing(["same"]);
    const reply = env.socket.request({ body: "hello" });
    ws.deliver({ type: "error", code: "unauthorized", message: "expired", ref: ws.frames()[0].id });
    await assert.rejects(reply, (err) => err.code === "unauthorized");
    assert.equal(ws.sent.length, 1);
  });

  it("an unauthorized answer to a plain send(): refresh for the next frames, and an error event", async () => {
    const { env, ws } = await refreshing(["old", "new"]);
    env.socket.send({ body: "x", client_id: "c1" });
    ws.deliver({ type: "error", code: "unauthorized", message: "expired", ref: "c1" });
    await settle();
    assert.equal(env.errors.at(-1).code, "unauthorized");
    assert.equal(ws.frames()[1].type, "auth");
  });

  it("refreshes a JWT refreshBeforeExpiryMs ahead of its exp, and the next one ahead of its own", async () => {
    const first = jwt("first", 30 * 60);
    const second = jwt("second", 90 * 60);
    const { env, ws } = await refreshing([first, second, jwt("third", 150 * 60)], {
      refreshBeforeExpiryMs: MIN,
      pingIntervalMs: 1000 * MIN,
    });
    await env.clock.advance(29 * MIN - 1);
    assert.deepEqual(ws.sent, []);
    await env.clock.advance(1);
    const auth = ws.frames()[0];
    assert.deepEqual({ type: auth.type, token: auth.token }, { type: "auth", token: second });
    ws.deliver({ type: "authenticated", ref: auth.id });
    await env.clock.advance(89 * MIN - 29 * MIN - 1);
    assert.equal(ws.sent.length, 1);
    await env.clock.advance(1);
    assert.equal(ws.frames()[1].token, jwt("third", 150 * 60));
  });

  it("never refreshes more often than minRefreshIntervalMs, even with short tokens", async () => {
    const short = (n) => jwt(`t${n}`, 10); // every token expires 10 s after the clock's start
    const { env, ws } = await refreshing([short(1), short(2), short(3), short(4)], {
      refreshBeforeExpiryMs: MIN,
      minRefreshIntervalMs: 30_000,
      pingIntervalMs: 1000 * MIN,
    });
    await env.clock.advance(0);
    assert.equal(ws.sent.length, 1, "the first refresh is due at once");
    ws.deliver({ type: "authenticated", ref: ws.frames()[0].id });
    await env.clock.advance(30_000 - 1);
    assert.equal(ws.sent.length, 1);
    await env.clock.advance(1);
    assert.equal(ws.sent.length, 2);
  });

  it("a feed connection never sends auth", async () => {
    const env = setup({ type: "feed", bookingId: undefined, tokens: ["a", "b"] });
    const ws = await connected(env);
    const reply = env.socket.request({ type: "latest" });
    ws.deliver({ type: "error", code: "unauthorized", message: "bad token", ref: ws.frames()[0].id });
    await assert.rejects(reply, (err) => err.code === "unauthorized");
    assert.equal(ws.sent.length, 1);
  });

  it("a proxy that does not know auth: the new token goes over a new socket instead", async () => {
    const { env, ws } = await refreshing(["old", "new"]);
    const reply = env.socket.request({ body: "hello" });
    const { id } = ws.frames()[0];
    ws.deliver({ type: "error", code: "unauthorized", message: "expired", ref: id });
    await settle();
    const auth = ws.frames()[1];
    ws.deliver({ type: "error", code: "backend_error", message: "unknown message type 'auth'", ref: auth.id });
    await settle();
    assert.equal(env.sockets.length, 2);
    const fresh = env.last();
    assert.equal(fresh.url.searchParams.get("token"), "new");
    fresh.accept();
    await settle();
    assert.deepEqual(fresh.frames(), [{ body: "hello", id }]);
    assert.equal(ws.closedWith.code, 1000);
    fresh.deliver({ type: "message", message: { id: 3 }, ref: id });
    assert.equal((await reply).message.id, 3);
  });
});
