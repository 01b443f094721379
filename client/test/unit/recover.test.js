// unknown_connection: the proxy has no record of the connection. The client switches over to a
// new connection and sends the request that got it once more, and never more than once.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { DEFAULTS } from "../../src/index.js";
import { connected, settle, setup } from "./helpers.js";

const unknown = (ref) => ({
  type: "error",
  code: "unknown_connection",
  message: "this connection is not registered; reconnect",
  retryable: false,
  ...(ref === undefined ? {} : { ref }),
});

/** A connected client whose socket has been open long enough to count as stable. */
async function stable(options = {}) {
  const env = setup({ tokens: ["t1", "t2", "t3", "t4"], ...options });
  const ws = await connected(env);
  await env.clock.advance(DEFAULTS.stableAfterMs);
  return { env, ws };
}

/** Every frame with this id that any socket of the client sent. */
function sentWithId(env, id) {
  return env.sockets.flatMap((ws) => ws.frames()).filter((f) => f.id === id);
}

describe("unknown_connection", () => {
  it("switches over to a new connection and resends the request once on it", async () => {
    const { env, ws } = await stable();
    const reply = env.socket.request({ body: "hi" });
    const { id } = ws.frames()[0];
    ws.deliver(unknown(id));
    await settle();
    assert.equal(env.sockets.length, 2, "a new connection at once (the old one had been stable)");
    const fresh = env.last();
    assert.equal(fresh.url.searchParams.get("token"), "t2", "with a fresh token");
    assert.equal(env.socket.state, "reconnecting");
    assert.match(env.states.at(-1).reason, /unknown_connection/);
    env.socket.send({ body: "meanwhile" });
    assert.equal(ws.sent.length, 1, "nothing more is sent on the connection the proxy does not know");
    assert.equal(env.socket.queued, 2, "the request and the new frame wait for the new connection");
    fresh.accept();
    await settle();
    assert.deepEqual(fresh.frames(), [{ body: "hi", id }, { body: "meanwhile" }], "resent first, then the queue, in order");
    fresh.deliver({ type: "message", message: { id: 7, body: "hi" }, ref: id });
    assert.equal((await reply).message.id, 7);
    assert.equal(ws.closedWith?.code, 1000, "the old socket is closed once nothing waits on it");
    assert.deepEqual(env.states.map((s) => s.state), ["connecting", "open", "reconnecting", "open"]);
    assert.equal(env.states.at(-1).purpose, "switch");
    assert.deepEqual(env.errors, [], "handled: no error event");
    assert.equal(sentWithId(env, id).length, 2);
  });

  it("a second unknown_connection for the same request rejects it: never sent a third time", async () => {
    const { env, ws } = await stable();
    const reply = env.socket.request({ body: "hi" }, { timeoutMs: 10 * 60 * 1000 });
    const { id } = ws.frames()[0];
    ws.deliver(unknown(id));
    await settle();
    const second = env.last();
    second.accept();
    await settle();
    second.deliver(unknown(id));
    await assert.rejects(
      reply,
      (err) => err.code === "unknown_connection" && err.frame?.ref === id && err.retryable === false,
    );
    // The new connection is unknown too: the client moves on again, after a backoff delay
    // (the new one was not stable yet), but the request stays rejected.
    await settle();
    const waiting = env.states.at(-1);
    assert.equal(waiting.state, "reconnecting");
    assert.equal(waiting.phase, "waiting");
    assert.ok(waiting.delayMs > 0, "not at once");
    assert.equal(env.sockets.length, 2);
    await env.clock.advance(waiting.delayMs);
    assert.equal(env.sockets.length, 3);
    env.last().accept();
    await env.clock.advance(60 * 1000);
    assert.equal(sentWithId(env, id).length, 2, "sent twice in all");
    assert.equal(env.sockets.length, 3, "one new connection per unknown_connection, no more");
    assert.equal(env.socket.state, "open");
  });

  it("a connection that is not yet stable waits a backoff delay before the next one", async () => {
    const env = setup({ tokens: ["t1", "t2"] }, { random: 0.5 });
    const ws = await connected(env);
    const reply = env.socket.request({ body: "hi" });
    ws.deliver(unknown(ws.frames()[0].id));
    await settle();
    assert.equal(env.sockets.length, 1);
    assert.deepEqual(
      { state: env.states.at(-1).state, phase: env.states.at(-1).phase, delayMs: env.states.at(-1).delayMs },
      { state: "reconnecting", phase: "waiting", delayMs: 250 },
    );
    await env.clock.advance(249);
    assert.equal(env.sockets.length, 1);
    await env.clock.advance(1);
    assert.equal(env.sockets.length, 2);
    assert.equal(env.states.at(-1).phase, "connecting");
    env.last().accept();
    await settle();
    env.last().deliver({ type: "receipt", ref: env.last().frames()[0].id });
    assert.equal((await reply).type, "receipt");
  });

  it("close() while waiting for the new connection: no new connection, the request is rejected", async () => {
    const env = setup({ tokens: ["t1", "t2"] });
    const ws = await connected(env);
    const reply = env.socket.request({ body: "hi" });
    ws.deliver(unknown(ws.frames()[0].id));
    await settle();
    env.socket.close();
    await assert.rejects(reply, (err) => err.code === "closed");
    await env.clock.advance(60 * 1000);
    assert.equal(env.sockets.length, 1);
    assert.equal(env.socket.state, "closed");
  });

  it("a frame sent with send(): an error event, and the switch-over; the frame is not resent", async () => {
    const { env, ws } = await stable();
    env.socket.send({ body: "fire and forget", client_id: "c-1" });
    ws.deliver(unknown("c-1"));
    await settle();
    assert.deepEqual(env.errors.map((e) => [e.code, e.ref]), [["unknown_connection", "c-1"]]);
    assert.equal(env.sockets.length, 2);
    env.last().accept();
    await settle();
    assert.deepEqual(env.last().frames(), []);
    assert.equal(env.socket.state, "open");
  });

  it("every request in flight on the lost connection is resent once; the old socket drains first", async () => {
    const { env, ws } = await stable();
    const first = env.socket.request({ n: 1 });
    const second = env.socket.request({ n: 2 });
    const [a, b] = ws.frames().map((f) => f.id);
    ws.deliver(unknown(a));
    await settle();
    const fresh = env.last();
    fresh.accept();
    await settle();
    assert.deepEqual(fresh.frames(), [{ n: 1, id: a }]);
    assert.equal(ws.closedWith, null, "the old socket waits for the answer to the second request");
    ws.deliver(unknown(b)); // answered on the old socket after the switch
    await settle();
    assert.deepEqual(fresh.frames(), [{ n: 1, id: a }, { n: 2, id: b }]);
    assert.equal(ws.closedWith?.code, 1000);
    assert.equal(env.sockets.length, 2, "an answer on the old socket does not abandon the new one");
    fresh.deliver({ type: "receipt", ref: b });
    fresh.deliver({ type: "receipt", ref: a });
    assert.deepEqual([(await first).ref, (await second).ref], [a, b]);
  });

  it("the new connection failing: frames stay queued, the switch is retried with backoff", async () => {
    const { env, ws } = await stable();
    const reply = env.socket.request({ body: "hi" });
    const { id } = ws.frames()[0];
    ws.deliver(unknown(id));
    await settle();
    env.last().refuse(502);
    await settle();
    const waiting = env.states.at(-1);
    assert.deepEqual([waiting.state, waiting.phase], ["reconnecting", "waiting"]);
    assert.match(waiting.reason, /502/);
    assert.equal(ws.sent.length, 1);
    await env.clock.advance(waiting.delayMs);
    assert.equal(env.sockets.length, 3);
    env.last().accept();
    await settle();
    assert.deepEqual(env.last().frames(), [{ body: "hi", id }]);
    env.last().deliver({ type: "receipt", ref: id });
    assert.equal((await reply).ref, id);
  });

  it("the new connection refused with the same token: closed, and the request rejected", async () => {
    const { env, ws } = await stable({ tokens: ["t1"] });
    const reply = env.socket.request({ body: "hi" });
    ws.deliver(unknown(ws.frames()[0].id));
    await settle();
    env.last().refuse(401);
    await assert.rejects(reply, (err) => err.code === "refused" && err.status === 401);
    assert.equal(env.socket.state, "closed");
    assert.equal(env.sockets.length, 2);
  });

  it("the request's timeout covers the wait for the new connection", async () => {
    const { env, ws } = await stable({ connectTimeoutMs: 60_000 });
    const reply = env.socket.request({ body: "hi" }, { timeoutMs: 5000 });
    ws.deliver(unknown(ws.frames()[0].id));
    const rejected = assert.rejects(reply, (err) => err.code === "timeout");
    await env.clock.advance(5000);
    await rejected;
    env.last().accept();
    await settle();
    assert.deepEqual(env.last().frames(), [], "a request that timed out while queued is never sent");
  });

  it("an auth answered unknown_connection: the new token goes over a new connection", async () => {
    const env = setup({ tokens: ["old", "new"] });
    const ws = await connected(env);
    const refreshed = env.socket.refreshToken();
    await settle();
    const auth = ws.frames()[0];
    assert.deepEqual([auth.type, auth.token], ["auth", "new"]);
    ws.deliver(unknown(auth.id));
    await settle();
    assert.equal(env.sockets.length, 2);
    assert.equal(env.last().url.searchParams.get("token"), "new");
    env.last().accept();
    assert.equal(await refreshed, true);
    await env.clock.advance(60 * 1000);
    assert.equal(env.sockets.length, 2, "one new connection, not a second from the pending retry");
    assert.deepEqual(env.errors, []);
    assert.equal(env.socket.state, "open");
  });

  it("an unauthorized request whose auth is answered unknown_connection goes through on the new connection", async () => {
    const env = setup({ tokens: ["old", "new"] });
    const ws = await connected(env);
    const reply = env.socket.request({ body: "hi" });
    const { id } = ws.frames()[0];
    ws.deliver({ type: "error", code: "unauthorized", message: "expired", retryable: false, ref: id });
    await settle();
    ws.deliver(unknown(ws.frames()[1].id));
    await settle();
    const fresh = env.last();
    fresh.accept();
    await settle();
    assert.deepEqual(fresh.frames(), [{ body: "hi", id }]);
    fresh.deliver({ type: "receipt", ref: id });
    assert.equal((await reply).ref, id);
  });
});
