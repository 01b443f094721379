// Connecting, reconnect backoff, refused handshakes (with and without a known HTTP status), close().
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { ChatSocket, ChatSocketError, DEFAULTS } from "../../src/index.js";
import { fakeJwt, fakeWebSocketClass } from "./fakes.js";
import { URL_, connected, settle, setup, waitOut } from "./helpers.js";

describe("options", () => {
  const { FakeWebSocket } = fakeWebSocketClass();
  const base = { url: URL_, type: "chat", bookingId: "42", token: "t", WebSocket: FakeWebSocket };

  it("rejects what the proxy would refuse, before any socket", () => {
    assert.throws(() => new ChatSocket({ ...base, url: "http://x/development" }), /ws:\/\/ or wss:\/\//);
    assert.throws(() => new ChatSocket({ ...base, type: "group" }), /type must be one of/);
    assert.throws(() => new ChatSocket({ ...base, type: "booking", bookingId: undefined }), /bookingId/);
    assert.throws(() => new ChatSocket({ ...base, bookingId: "" }), /bookingId/, "a chat socket's bookingId, when given, is checked");
    assert.throws(() => new ChatSocket({ ...base, bookingId: "a/b" }), /bookingId/);
    assert.throws(() => new ChatSocket({ ...base, bookingId: "x".repeat(65) }), /bookingId/);
    assert.throws(() => new ChatSocket({ ...base, token: undefined }), /token/);
    assert.throws(() => new ChatSocket({ ...base, token: 42 }), /token must be/);
    assert.throws(() => new ChatSocket({ ...base, transport: "cookie" }), /transport/);
    assert.throws(() => new ChatSocket({ ...base, queueLimit: -1 }), /queueLimit/);
    assert.throws(() => new ChatSocket({ ...base, pingIntervalMs: "soon" }), /pingIntervalMs/);
  });

  it("needs a WebSocket constructor where there is no global one", () => {
    const saved = globalThis.WebSocket;
    try {
      delete globalThis.WebSocket;
      assert.throws(() => new ChatSocket({ ...base, WebSocket: undefined }), /WebSocket option/);
    } finally {
      if (saved) globalThis.WebSocket = saved;
    }
  });

  it("takes no token and no booking for feed, no booking for notification", () => {
    assert.doesNotThrow(() => new ChatSocket({ url: URL_, type: "feed", WebSocket: FakeWebSocket }));
    assert.doesNotThrow(() => new ChatSocket({ url: URL_, type: "notification", token: "t", WebSocket: FakeWebSocket }));
  });

  it("keeps the defaults inside API Gateway's limits", () => {
    assert.ok(DEFAULTS.pingIntervalMs + DEFAULTS.pongTimeoutMs < 10 * 60 * 1000);
    assert.ok(DEFAULTS.switchOverBeforeMs > DEFAULTS.connectTimeoutMs + DEFAULTS.switchOverDrainMs);
    assert.equal(DEFAULTS.maxLifetimeMs, 2 * 60 * 60 * 1000);
  });
});

describe("connect", () => {
  it("opens with the query the proxy expects and resolves when open", async () => {
    const env = setup();
    const ws = await connected(env);
    assert.equal(ws.url.pathname, "/development");
    assert.equal(ws.url.searchParams.get("type"), "chat");
    assert.equal(ws.url.searchParams.get("booking_id"), "42");
    assert.equal(ws.url.searchParams.get("token"), "token-1");
    assert.equal(ws.protocols, undefined);
    assert.deepEqual(env.states.map((s) => s.state), ["connecting", "open"]);
    assert.equal(env.socket.state, "open");
  });

  it("offers the token as the bearer subprotocol, never in the URL, with transport bearer", async () => {
    const env = setup({ transport: "bearer" });
    const ws = await connected(env);
    assert.deepEqual(ws.protocols, ["bearer", "token-1"]);
    assert.equal(ws.url.searchParams.get("token"), null);
  });

  it("accepts a plain string token and a feed connection without one", async () => {
    const { FakeWebSocket, sockets } = fakeWebSocketClass();
    const feed = new ChatSocket({ url: URL_, type: "feed", WebSocket: FakeWebSocket });
    const done = feed.connect();
    await settle();
    sockets[0].accept();
    await done;
    assert.equal(sockets[0].url.searchParams.get("token"), null);
    assert.equal(sockets[0].url.searchParams.get("booking_id"), null);
    feed.close();
  });

  it("connect() twice opens one socket", async () => {
    const env = setup();
    const a = env.socket.connect();
    const b = env.socket.connect();
    await settle();
    assert.equal(env.sockets.length, 1);
    env.last().accept();
    await Promise.all([a, b]);
    await env.socket.connect(); // already open: resolves at once
    assert.equal(env.sockets.length, 1);
  });
});

describe("reconnect backoff", () => {
  it("grows as full jitter, capped, while attempts fail, and reconnects after the delay only", async () => {
    const env = setup({ reconnectBaseDelayMs: 500, reconnectMaxDelayMs: 8000 });
    const ws = await connected(env);
    ws.drop(1006);
    await settle();
    const delays = [];
    for (let i = 0; i < 7; i += 1) {
      const waiting = env.states.at(-1);
      assert.equal(waiting.state, "reconnecting");
      assert.equal(waiting.phase, "waiting");
      delays.push(waiting.delayMs);
      const before = env.sockets.length;
      await env.clock.advance(waiting.delayMs - 1);
      assert.equal(env.sockets.length, before, "no attempt before the delay");
      await env.clock.advance(1);
      assert.equal(env.sockets.length, before + 1, "an attempt once the delay is over");
      env.last().drop(1006); // the attempt fails (network)
      await settle();
    }
    // random() is just under 1: each delay is the top of its range, 500 * 2^n capped at 8000.
    assert.deepEqual(delays, [499, 999, 1999, 3999, 7999, 7999, 7999]);
  });

  it("draws each delay uniformly from zero to the ceiling (full jitter)", async () => {
    const draws = [0, 0.5, 0.25];
    let i = 0;
    const env = setup({ reconnectBaseDelayMs: 1000 }, { random: () => draws[i++ % draws.length] });
    const ws = await connected(env); // draw 0 (request id prefix)
    ws.drop(1006);
    await settle();
    assert.equal(env.states.at(-1).delayMs, Math.floor(0.5 * 1000));
    await env.clock.advance(500);
    env.last().drop(1006);
    await settle();
    assert.equal(env.states.at(-1).delayMs, Math.floor(0.25 * 2000));
  });

  it("resets after a connection that stayed up for stableAfterMs, not after a short one", async () => {
    const env = setup({ reconnectBaseDelayMs: 1000, stableAfterMs: 10_000 });
    let ws = await connected(env);
    for (const expected of [999, 1999, 3999]) {
      ws.drop(1001, "Going away");
      await settle();
      assert.equal(env.states.at(-1).delayMs, expected);
      await env.clock.advance(expected);
      ws = env.last();
      ws.accept();
      await env.clock.advance(9_000); // open, but not long enough to count as stable
    }
    await env.clock.advance(1_000); // now stable
    ws.drop(1001, "Going away");
    await settle();
    assert.equal(env.states.at(-1).delayMs, 999);
  });

  it("reconnects after the server's close of any kind, with a fresh token each time", async () => {
    const env = setup({ tokens: ["token-1", "token-2", "token-3"] });
    const ws = await connected(env);
    ws.drop(1000, "Connection Closed Normally"); // e.g. DELETE @connections
    await waitOut(env);
    assert.equal(env.sockets.length, 2);
    assert.equal(env.last().url.searchParams.get("token"), "token-2");
    env.last().accept();
    await settle();
    assert.equal(env.socket.state, "open");
  });

  it("gives up after maxAttempts consecutive failures", async () => {
    const env = setup({ maxAttempts: 3 });
    const done = env.socket.connect();
    const rejected = assert.rejects(done, (err) => err.code === "connect_failed");
    await settle();
    for (let i = 0; i < 3; i += 1) {
      env.last().drop(1006);
      if (i < 2) await waitOut(env);
    }
    await rejected;
    assert.equal(env.socket.state, "closed");
    assert.equal(env.sockets.length, 3);
    assert.equal(env.errors.at(-1).code, "connect_failed");
  });

  it("counts a handshake that never completes as a failed attempt", async () => {
    const env = setup({ connectTimeoutMs: 5000 });
    env.socket.connect();
    await settle();
    await env.clock.advance(5000);
    assert.equal(env.sockets[0].closedWith?.code, 1006, "the hanging socket is given up");
    assert.equal(env.states.at(-1).phase, "waiting");
    await waitOut(env);
    assert.equal(env.sockets.length, 2);
  });
});

describe("refused handshakes", () => {
  it("401 with the same token from the provider: closed, connect() rejects, never retried", async () => {
    const env = setup({ tokens: ["stale"] });
    const done = env.socket.connect();
    const rejected = assert.rejects(done, (err) => err instanceof ChatSocketError && err.code === "refused" && err.status === 401);
    await settle();
    env.last().refuse(401);
    await rejected;
    assert.equal(env.socket.state, "closed");
    assert.equal(env.errors.at(-1).code, "refused");
    assert.equal(env.errors.at(-1).status, 401);
    await env.clock.advance(10 * 60_000);
    assert.equal(env.sockets.length, 1);
    assert.throws(() => env.socket.send({ body: "x" }), (err) => err.code === "closed");
  });

  it("401 and then a new token: one more attempt with it", async () => {
    const env = setup({ tokens: ["stale", "fresh"] });
    const done = env.socket.connect();
    await settle();
    env.last().refuse(401);
    await waitOut(env);
    assert.equal(env.sockets.length, 2);
    assert.equal(env.last().url.searchParams.get("token"), "fresh");
    env.last().accept();
    await done;
    assert.equal(env.tokenCalls(), 2, "the token fetched after the refusal is the one used");
  });

  it("400 (a bad query) is never retried, whatever the token", async () => {
    const env = setup({ tokens: ["a", "b", "c"] });
    const done = env.socket.connect();
    const rejected = assert.rejects(done, (err) => err.code === "refused" && err.status === 400);
    await settle();
    env.last().refuse(400);
    await rejected;
    await env.clock.advance(10 * 60_000);
    assert.equal(env.sockets.length, 1);
    assert.equal(env.tokenCalls(), 1);
  });

  it("403 on a reconnect stops the socket too", async () => {
    const env = setup({ tokens: ["t"] });
    const ws = await connected(env);
    ws.drop(1001);
    await waitOut(env);
    env.last().refuse(403);
    await settle();
    assert.equal(env.socket.state, "closed");
    assert.equal(env.errors.at(-1).status, 403);
  });

  it("502/504 (backend down or slow) and 429 are retried", async () => {
    const env = setup();
    env.socket.connect();
    await settle();
    for (const status of [502, 504, 429]) {
      env.last().refuse(status);
      await waitOut(env);
    }
    assert.equal(env.sockets.length, 4);
    assert.notEqual(env.socket.state, "closed");
  });

  it("reads the status from the ws package's error message when it cannot listen for unexpected-response", async () => {
    const { FakeWebSocket, sockets } = fakeWebSocketClass();
    delete FakeWebSocket.prototype.on;
    const socket = new ChatSocket({ url: URL_, bookingId: "1", token: "t", WebSocket: FakeWebSocket });
    const done = assert.rejects(socket.connect(), (err) => err.status === 401);
    await settle();
    sockets[0].refuse(401);
    await done;
  });

  describe("in a browser (the status of a refused handshake is hidden)", () => {
    it("retries an unknown failure with a fresh token each time (an outage looks the same)", async () => {
      const env = setup({ tokens: ["t1", "t2", "t3"] }, { browser: true });
      env.socket.connect();
      await settle();
      env.last().refuse(401);
      await waitOut(env);
      env.last().refuse(401);
      await waitOut(env);
      assert.deepEqual(
        env.sockets.map((s) => s.url.searchParams.get("token")),
        ["t1", "t2", "t3"],
      );
      assert.notEqual(env.socket.state, "closed");
    });

    it("stops when the token it used is past its exp and the provider has no other", async () => {
      const clockStart = 1_700_000_000_000;
      const expired = fakeJwt({ sub: "alice", exp: clockStart / 1000 - 60 });
      const env = setup({ tokens: [expired] }, { browser: true });
      const done = assert.rejects(env.socket.connect(), (err) => err.code === "token_expired");
      await settle();
      env.last().refuse(401);
      await done;
      await env.clock.advance(10 * 60_000);
      assert.equal(env.sockets.length, 1);
    });

    it("goes on when the provider then yields a token that is not expired", async () => {
      const clockStart = 1_700_000_000_000;
      const expired = fakeJwt({ sub: "alice", exp: clockStart / 1000 - 60 });
      const fresh = fakeJwt({ sub: "alice", exp: clockStart / 1000 + 3600 });
      const env = setup({ tokens: [expired, fresh] }, { browser: true });
      env.socket.connect();
      await settle();
      env.last().refuse(401);
      await waitOut(env);
      assert.equal(env.last().url.searchParams.get("token"), fresh);
    });
  });

  it("a token provider that throws: an error event, then a retry with backoff", async () => {
    const env = setup({ tokens: [new Error("auth server down"), "ok"] });
    const done = env.socket.connect();
    await settle();
    assert.equal(env.sockets.length, 0);
    assert.equal(env.errors.at(-1).code, "token_unavailable");
    assert.match(env.errors.at(-1).message, /auth server down/);
    await waitOut(env);
    env.last().accept();
    await done;
    assert.equal(env.last().url.searchParams.get("token"), "ok");
  });

  it("a token provider that never answers: token_unavailable after connectTimeoutMs, then a retry", async () => {
    let calls = 0;
    const env = setup({
      connectTimeoutMs: 5000,
      token: () => {
        calls += 1;
        return calls === 1 ? new Promise(() => {}) : Promise.resolve("second");
      },
    });
    const done = env.socket.connect();
    await env.clock.advance(4999);
    assert.deepEqual(env.errors, [], "still waiting for the provider");
    await env.clock.advance(1);
    assert.equal(env.errors.at(-1).code, "token_unavailable");
    assert.match(env.errors.at(-1).message, /did not answer within 5000 ms/);
    assert.equal(env.sockets.length, 0);
    await waitOut(env);
    env.last().accept();
    await done;
    assert.equal(env.last().url.searchParams.get("token"), "second");
    assert.equal(calls, 2);
  });

  it("close() while the token provider hangs: nothing left running", async () => {
    const env = setup({ token: () => new Promise(() => {}) });
    const done = env.socket.connect();
    await settle();
    env.socket.close();
    await assert.rejects(done, (err) => err.code === "closed");
    assert.deepEqual(env.clock.pending(), []);
    assert.deepEqual(env.errors, []);
  });
});

describe("close()", () => {
  it("closes the socket with 1000, never reconnects, rejects what is pending", async () => {
    const env = setup();
    const ws = await connected(env);
    const pending = env.socket.request({ body: "hi" });
    env.socket.close();
    await assert.rejects(pending, (err) => err.code === "closed");
    assert.equal(ws.closedWith.code, 1000);
    await env.clock.advance(10 * 60_000);
    assert.equal(env.sockets.length, 1);
    assert.equal(env.socket.state, "closed");
    assert.deepEqual(env.errors, [], "closing on purpose is not an error");
    await assert.rejects(env.socket.connect(), (err) => err.code === "closed");
  });

  it("before the handshake completes: connect() rejects, and no timer is left running", async () => {
    const env = setup();
    const done = env.socket.connect();
    await settle();
    env.socket.close();
    await assert.rejects(done, (err) => err.code === "closed");
    assert.deepEqual(env.clock.pending(), []);
  });

  it("while waiting to reconnect: the reconnect never happens", async () => {
    const env = setup();
    const ws = await connected(env);
    ws.drop(1006);
    await settle();
    env.socket.close();
    assert.deepEqual(env.clock.pending(), []);
    await env.clock.advance(10 * 60_000);
    assert.equal(env.sockets.length, 1);
  });
});
