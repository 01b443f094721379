// Sending: the bounded queue, requests (id -> ref), timeouts; receiving: history parts, dedupe.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { connected, settle, setup, waitOut } from "./helpers.js";

describe("send and the queue", () => {
  it("sends at once when open", async () => {
    const env = setup();
    const ws = await connected(env);
    env.socket.send({ body: "hello" });
    assert.deepEqual(ws.frames(), [{ body: "hello" }]);
  });

  it("holds frames while reconnecting and sends them after the reconnect, in order, exactly once", async () => {
    const env = setup({ queueLimit: 5 });
    const first = await connected(env);
    first.drop(1006);
    await settle();
    for (let i = 1; i <= 5; i += 1) env.socket.send({ body: `m${i}` });
    assert.equal(env.socket.queued, 5);
    assert.throws(
      () => env.socket.send({ body: "m6" }),
      (err) => err.code === "queue_full" && /queueLimit/.test(err.message),
    );
    await waitOut(env);
    const attempt = env.last();
    attempt.drop(1006); // this attempt fails: nothing may be lost or sent on it
    assert.deepEqual(attempt.sent, []);
    await waitOut(env);
    const second = env.last();
    second.accept();
    await settle();
    assert.deepEqual(second.frames().map((f) => f.body), ["m1", "m2", "m3", "m4", "m5"]);
    assert.equal(env.socket.queued, 0);
    second.drop(1001); // a later reconnect sends nothing again
    await waitOut(env);
    env.last().accept();
    await settle();
    assert.deepEqual(env.last().sent, []);
    assert.deepEqual(first.sent, []);
  });

  it("queues frames sent before connect() and sends them once open", async () => {
    const env = setup();
    env.socket.send({ body: "early" });
    const ws = await connected(env);
    assert.deepEqual(ws.frames(), [{ body: "early" }]);
  });

  it("keeps the order when a frame is sent while the queue is still being emptied", async () => {
    const env = setup();
    const ws = await connected(env);
    ws.drop(1006);
    await settle();
    env.socket.send({ n: 1 });
    env.socket.on("state", (state) => {
      if (state === "open") env.socket.send({ n: 3 }); // a listener sending at once
    });
    env.socket.send({ n: 2 });
    await waitOut(env);
    env.last().accept();
    await settle();
    assert.deepEqual(env.last().frames(), [{ n: 1 }, { n: 2 }, { n: 3 }]);
  });

  it("refuses what the proxy could not take", async () => {
    const env = setup();
    await connected(env);
    assert.throws(() => env.socket.send("text"), (err) => err.code === "invalid_frame");
    assert.throws(() => env.socket.send([1, 2]), (err) => err.code === "invalid_frame");
    const loop = {};
    loop.self = loop;
    assert.throws(() => env.socket.send(loop), (err) => err.code === "invalid_frame");
    assert.throws(() => env.socket.send({ body: "é".repeat(70 * 1024) }), (err) => err.code === "too_large");
    assert.doesNotThrow(() => env.socket.send({ body: "x".repeat(100 * 1024) }));
  });
});

describe("request", () => {
  it("adds an id and resolves with the frame that carries it as ref", async () => {
    const env = setup();
    const ws = await connected(env);
    const reply = env.socket.request({ body: "hi", client_id: "c1" });
    const [sent] = ws.frames();
    assert.equal(typeof sent.id, "string");
    assert.equal(sent.client_id, "c1");
    ws.deliver({ type: "message", message: { id: 7, body: "someone else" } }); // no ref: not the answer
    ws.deliver({ type: "message", message: { id: 8, body: "hi" }, ref: sent.id });
    const frame = await reply;
    assert.equal(frame.message.id, 8);
    assert.deepEqual(env.messages.map((m) => m.message.id), [7, 8], "answers are messages too");
  });

  it("keeps an id the caller chose, and refuses a duplicate or a bad one", async () => {
    const env = setup();
    const ws = await connected(env);
    const reply = env.socket.request({ type: "read", message_id: 3, id: 41 });
    assert.equal(ws.frames()[0].id, 41);
    await assert.rejects(env.socket.request({ id: 41 }), (err) => err.code === "invalid_frame");
    await assert.rejects(env.socket.request({ id: { no: 1 } }), (err) => err.code === "invalid_frame");
    ws.deliver({ type: "receipt", ref: "41" }); // a string is not the number 41
    ws.deliver({ type: "receipt", ref: 41 });
    assert.equal((await reply).ref, 41);
  });

  it("rejects with the proxy's error frame, which is not emitted as an error event", async () => {
    const env = setup();
    const ws = await connected(env);
    const reply = env.socket.request({ type: "reaction", message_id: 999 });
    const id = ws.frames()[0].id;
    const frame = { type: "error", code: "backend_error", message: "there is no message 999", retryable: false, ref: id };
    ws.deliver(frame);
    await assert.rejects(reply, (err) => err.code === "backend_error" && err.frame.ref === id && err.retryable === false);
    assert.deepEqual(env.errors, []);
    ws.deliver({ type: "error", code: "invalid_message", message: "x", retryable: false });
    assert.equal(env.errors.length, 1, "an error frame for nobody is an error event");
  });

  it("times out, and a request that timed out in the queue is never sent", async () => {
    const env = setup();
    const ws = await connected(env);
    const open = env.socket.request({ n: 1 }, { timeoutMs: 1000 });
    const rejected = assert.rejects(open, (err) => err.code === "timeout" && err.retryable);
    await env.clock.advance(1000);
    await rejected;
    ws.deliver({ type: "late", ref: ws.frames()[0].id }); // a late answer is just a message
    assert.equal(env.messages.at(-1).type, "late");

    ws.drop(1006);
    await settle();
    const queued = env.socket.request({ n: 2 }, { timeoutMs: 100 });
    env.socket.send({ n: 3 });
    const rejectedQueued = assert.rejects(queued, (err) => err.code === "timeout");
    await env.clock.advance(100);
    await rejectedQueued;
    await waitOut(env);
    env.last().accept();
    await settle();
    assert.deepEqual(env.last().frames(), [{ n: 3 }]);
  });

  it("rejects with connection_lost when the socket it went out on closes before the answer", async () => {
    const env = setup();
    const ws = await connected(env);
    const reply = env.socket.request({ body: "hi" });
    ws.drop(1006);
    await assert.rejects(reply, (err) => err.code === "connection_lost" && /may or may not/.test(err.message));
  });
});

describe("history parts", () => {
  const part = (i, n, ids, extra = {}) => ({
    type: "history",
    thread: { id: "booking-42" },
    part: i,
    parts: n,
    messages: ids.map((id) => ({ id, body: `m${id}`, created_at: "2024-01-01T00:00:00Z" })),
    ...extra,
  });

  it("re-joins ordered parts into one history frame", async () => {
    const env = setup();
    const ws = await connected(env);
    ws.deliver(part(1, 3, [1, 2]));
    ws.deliver(part(2, 3, [3]));
    assert.deepEqual(env.messages, [], "nothing before the last part");
    ws.deliver(part(3, 3, [4, 5]));
    assert.equal(env.messages.length, 1);
    const history = env.messages[0];
    assert.deepEqual(history.messages.map((m) => m.id), [1, 2, 3, 4, 5]);
    assert.equal(history.part, undefined);
    assert.equal(history.parts, undefined);
    assert.deepEqual(history.thread, { id: "booking-42" });
    assert.equal(history.resumed, undefined);
  });

  it("resolves a request answered by a history in parts (the ref is on the last part)", async () => {
    const env = setup();
    const ws = await connected(env);
    const reply = env.socket.request({ type: "history" });
    const { id } = ws.frames()[0];
    ws.deliver(part(1, 2, [1]));
    ws.deliver(part(2, 2, [2], { ref: id }));
    const frame = await reply;
    assert.equal(frame.ref, id);
    assert.deepEqual(frame.messages.map((m) => m.id), [1, 2]);
    assert.equal(env.messages.length, 1);
  });

  it("passes a history in one frame through", async () => {
    const env = setup();
    const ws = await connected(env);
    ws.deliver({ type: "history", thread: { id: "t" }, messages: [{ id: 1 }] });
    assert.deepEqual(env.messages[0].messages, [{ id: 1 }]);
  });

  it("drops parts out of order with an error event, and a part set cut by a reconnect", async () => {
    const env = setup();
    const ws = await connected(env);
    ws.deliver(part(2, 3, [3]));
    assert.equal(env.errors.at(-1).code, "invalid_frame");
    ws.deliver(part(1, 3, [1]));
    ws.drop(1006); // parts 2 and 3 never come on this socket
    await waitOut(env);
    const next = env.last();
    next.accept();
    await settle();
    next.deliver(part(2, 2, [9]));
    assert.deepEqual(env.messages, []);
    next.deliver(part(1, 2, [1, 2]));
    next.deliver(part(2, 2, [3]));
    assert.deepEqual(env.messages[0].messages.map((m) => m.id), [1, 2, 3]);
  });
});

describe("messages are emitted once", () => {
  const message = (id, created_at = "2024-01-01T00:00:00Z") => ({ id, body: `m${id}`, user_id: "bob", created_at });

  it("drops a message already emitted, and history messages already emitted after a reconnect", async () => {
    const env = setup();
    const ws = await connected(env);
    ws.deliver({ type: "history", messages: [message(1), message(2)] });
    ws.deliver({ type: "message", message: message(3) });
    ws.deliver({ type: "message", message: message(3) });
    ws.drop(1001);
    await waitOut(env);
    const next = env.last();
    next.accept();
    await settle();
    next.deliver({ type: "history", messages: [message(1), message(2), message(3), message(4)] });
    next.deliver({ type: "message", message: message(4) });
    next.deliver({ type: "message", message: message(5) });
    const seen = env.messages.map((f) => (f.type === "history" ? f.messages.map((m) => m.id) : f.message.id));
    assert.deepEqual(seen, [[1, 2], 3, [4], 5]);
    assert.equal(env.messages[2].resumed, true, "a history after a reconnect says so");
  });

  it("a message with a known id but another creation time is another message (a backend that reuses ids)", async () => {
    const env = setup();
    const ws = await connected(env);
    ws.deliver({ type: "message", message: message(1, "2024-01-01T00:00:00Z") });
    ws.deliver({ type: "message", message: message(1, "2024-01-02T00:00:00Z") });
    assert.equal(env.messages.length, 2);
  });

  it("keeps frames without a message id (reactions, statuses) and resolves a request answered by a repeat", async () => {
    const env = setup();
    const ws = await connected(env);
    ws.deliver({ type: "reaction", message_id: 1, reactions: {} });
    ws.deliver({ type: "reaction", message_id: 1, reactions: {} });
    assert.equal(env.messages.length, 2);
    ws.deliver({ type: "message", message: message(9) });
    const reply = env.socket.request({ body: "m9" });
    ws.deliver({ type: "message", message: message(9), ref: ws.frames()[0].id });
    assert.equal((await reply).message.id, 9);
    assert.equal(env.messages.length, 3);
  });

  it("remembers a bounded number of keys", async () => {
    const env = setup({ dedupeLimit: 2 });
    const ws = await connected(env);
    for (const id of [1, 2, 3, 1]) ws.deliver({ type: "message", message: message(id) });
    assert.deepEqual(env.messages.map((f) => f.message.id), [1, 2, 3, 1], "1 was forgotten after 3");
  });

  it("reports a frame that is not a JSON object, and binary frames", async () => {
    const env = setup();
    const ws = await connected(env);
    ws.deliver("not json");
    ws.deliver("[1]");
    ws._fire("message", { data: new Uint8Array([1]) });
    assert.deepEqual(env.errors.map((e) => e.code), ["invalid_frame", "invalid_frame", "invalid_frame"]);
    assert.deepEqual(env.messages, []);
  });

  it("a listener that throws does not stop the others", async () => {
    const env = setup();
    const ws = await connected(env);
    const saved = globalThis.reportError;
    const reported = [];
    globalThis.reportError = (err) => reported.push(err);
    try {
      env.socket.on("message", () => {
        throw new Error("boom");
      });
      const after = [];
      env.socket.on("message", (f) => after.push(f));
      ws.deliver({ type: "x" });
      assert.equal(after.length, 1);
      assert.equal(reported[0].message, "boom");
    } finally {
      globalThis.reportError = saved;
    }
  });
});
