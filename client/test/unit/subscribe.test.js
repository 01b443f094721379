// One socket per user: subscribe(), routing by booking, cursors, resubscribing after every new
// connection, presence, unsubscribe; and `since` on a per-booking socket's reconnect.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { ChatSocket, ChatSocketError, DEFAULTS } from "../../src/index.js";
import { fakeWebSocketClass } from "./fakes.js";
import { URL_, connected, settle, setup, waitOut } from "./helpers.js";

/** A user-level socket (a chat socket without bookingId) on the fake clock. */
function userSetup(options = {}, extra) {
  return setup({ bookingId: undefined, ...options }, extra);
}

/** Every frame of `type` a fake socket received from the client. */
function sent(ws, type) {
  return ws.frames().filter((f) => f.type === type);
}

/** The proxy's answer to the last subscribe for `bookingId` on `ws`. */
function answerSubscribe(ws, bookingId, connectionType = "chat") {
  const frame = sent(ws, "subscribe").filter((f) => f.booking_id === bookingId).at(-1);
  assert.ok(frame, `a subscribe for ${bookingId} was sent`);
  ws.deliver({ type: "subscribed", booking_id: bookingId, connection_type: connectionType, ref: frame.id });
  return frame;
}

/** subscribe() and answer it `subscribed`; the subscription and what it emits. */
async function subscribed(env, ws, spec) {
  const seen = [];
  const errors = [];
  const promise = env.socket.subscribe({ ...spec, onMessage: (f) => seen.push(f), onError: (f) => errors.push(f) });
  await settle();
  answerSubscribe(ws, spec.bookingId, spec.connectionType);
  const sub = await promise;
  return { sub, seen, errors };
}

/** No keepalive within the test (the fake server answers no ping). */
const NO_PING = 1000 * 60 * 60 * 1000;

function error(code, ref, extra = {}) {
  return { type: "error", code, message: code, retryable: false, ref, ...extra };
}

const msg = (bookingId, id, body = `m${id}`) => ({
  type: "message",
  message: { id, body, created_at: `2026-01-01T00:00:${String(id).padStart(2, "0")}Z` },
  broadcast: true,
  booking_id: bookingId,
});

/** Drop the socket and accept the reconnect; the new fake socket. */
async function reconnect(env, ws) {
  ws.drop(1006);
  await waitOut(env);
  const fresh = env.last();
  assert.notEqual(fresh, ws, "a new socket");
  fresh.accept();
  await settle();
  return fresh;
}

describe("a user-level socket", () => {
  it("a chat socket without bookingId connects with ?type=chat&token= and no booking_id", async () => {
    const env = userSetup();
    const ws = await connected(env);
    assert.equal(ws.url.searchParams.get("type"), "chat");
    assert.equal(ws.url.searchParams.get("token"), "token-1");
    assert.equal(ws.url.searchParams.has("booking_id"), false);
    ws.deliver({ type: "conversations", conversations: [] });
    assert.deepEqual(env.messages.map((f) => f.type), ["conversations"], "its own initial frame, as for any connect");
    const again = await reconnect(env, ws);
    assert.equal(again.url.searchParams.has("since"), false, "no booking of its own: never a since");
    assert.equal(again.url.searchParams.has("booking_id"), false);
  });

  it("a booking socket still needs its bookingId; subscribe() checks its options", async () => {
    const { FakeWebSocket } = fakeWebSocketClass();
    assert.throws(() => new ChatSocket({ url: URL_, type: "booking", token: "t", WebSocket: FakeWebSocket }), /bookingId/);
    assert.throws(() => new ChatSocket({ url: URL_, token: "t", WebSocket: FakeWebSocket, cursor: 3 }), /cursor must be a function/);
    const env = userSetup();
    const ws = await connected(env);
    await assert.rejects(env.socket.subscribe(), TypeError);
    await assert.rejects(env.socket.subscribe({ bookingId: "a/b" }), /bookingId must be/);
    await assert.rejects(env.socket.subscribe({ bookingId: "42", connectionType: "feed" }), /connectionType must be one of chat, booking/);
    await assert.rejects(env.socket.subscribe({ bookingId: "42", since: {} }), /since must be/);
    await assert.rejects(env.socket.subscribe({ bookingId: "42", since: "" }), /since must be/);
    await assert.rejects(env.socket.subscribe({ bookingId: "42", onMessage: "x" }), /onMessage must be a function/);
    await assert.rejects(env.socket.subscribe({ bookingId: "42", timeoutMs: -1 }), /timeoutMs/);
    assert.deepEqual(ws.frames(), [], "nothing sent for a bad call");
    const feed = new ChatSocket({ url: URL_, type: "feed", WebSocket: FakeWebSocket });
    await assert.rejects(feed.subscribe({ bookingId: "42" }), /feed connection has no user/);
  });
});

describe("subscribe", () => {
  it("sends subscribe, resolves on subscribed; the initial frames right behind the answer reach the subscription", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const seen = [];
    const promise = env.socket.subscribe({ bookingId: "42", onMessage: (f) => seen.push(f) });
    const [frame] = ws.frames();
    assert.deepEqual(Object.keys(frame).sort(), ["booking_id", "id", "type"], "chat is the default: no connection_type, no since");
    assert.deepEqual([frame.type, frame.booking_id], ["subscribe", "42"]);
    // In one network read: the answer, then the booking's initial frames, before any await.
    ws.deliver({ type: "subscribed", booking_id: "42", connection_type: "chat", ref: frame.id });
    ws.deliver({ type: "history", booking_id: "42", messages: [{ id: 5, body: "a", created_at: "t5" }] });
    ws.deliver({ type: "receipt", booking_id: "42", last_read: 5 });
    const sub = await promise;
    assert.deepEqual([sub.bookingId, sub.connectionType, sub.state], ["42", "chat", "subscribed"]);
    assert.deepEqual(seen.map((f) => f.type), ["subscribed", "history", "receipt"]);
    assert.equal(seen[1].resumed, undefined, "the booking's first history");
    assert.equal(sub.cursor, 5, "the last message of the history");
    assert.deepEqual(env.socket.subscriptions, [sub]);
    assert.deepEqual(env.messages.map((f) => f.type), ["subscribed", "history", "receipt"], "the socket's message event sees them too");
    assert.deepEqual(env.errors, []);
  });

  it("a frame of the booking arriving before the subscribed answer reaches the subscription; its cursor is kept once subscribed", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const seen = [];
    const promise = env.socket.subscribe({ bookingId: "42", since: 3, onMessage: (f) => seen.push(f.type) });
    ws.deliver(msg("42", 4)); // broadcast to the channel the proxy has just joined
    answerSubscribe(ws, "42");
    const sub = await promise;
    assert.deepEqual(seen, ["message", "subscribed"]);
    assert.equal(sub.cursor, 4, "the frame's cursor, not the since");
    // Refused after such a frame: nothing kept.
    const refused = env.socket.subscribe({ bookingId: "43", onMessage: (f) => seen.push(`43 ${f.type}`) });
    ws.deliver(msg("43", 5));
    ws.deliver(error("forbidden", sent(ws, "subscribe").at(-1).id));
    await assert.rejects(refused, (err) => err.code === "forbidden");
    assert.deepEqual(env.socket.subscriptions, [sub]);
    const again = await reconnect(env, ws);
    assert.deepEqual(sent(again, "subscribe").map((f) => [f.booking_id, f.since]), [["42", 4]]);
  });

  it("sends connection_type when not chat, and since when given; the since is the cursor until a frame moves it", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const promise = env.socket.subscribe({ bookingId: "42", connectionType: "booking", since: 1187 });
    const frame = answerSubscribe(ws, "42", "booking");
    assert.deepEqual({ ...frame, id: undefined }, { type: "subscribe", booking_id: "42", connection_type: "booking", since: 1187, id: undefined });
    const sub = await promise;
    assert.equal(sub.connectionType, "booking");
    assert.equal(sub.cursor, 1187);
  });

  it("subscribe() before connect() is queued and sent once open", async () => {
    const env = userSetup();
    const promise = env.socket.subscribe({ bookingId: "42" });
    assert.equal(env.socket.queued, 1);
    const ws = await connected(env);
    answerSubscribe(ws, "42");
    assert.equal((await promise).state, "subscribed");
    assert.equal(sent(ws, "subscribe").length, 1);
  });

  for (const code of ["forbidden", "backend_error", "too_many_subscriptions", "backend_unavailable"]) {
    it(`a subscription refused with ${code} rejects with that code and stores nothing`, async () => {
      const env = userSetup();
      const ws = await connected(env);
      const seen = [];
      const promise = env.socket.subscribe({ bookingId: "42", since: 10, onMessage: (f) => seen.push(f) });
      const { id } = ws.frames()[0];
      ws.deliver(error(code, id, { booking_id: "42" }));
      await assert.rejects(promise, (err) => err instanceof ChatSocketError && err.code === code && err.frame.ref === id);
      assert.deepEqual(env.socket.subscriptions, []);
      assert.deepEqual(env.errors, [], "the rejection carries it; no error event");
      ws.deliver(msg("42", 11));
      assert.deepEqual(seen, [], "no subscription gets the booking's frames");
      assert.equal(env.messages.length, 1, "the socket's message event still does");
      const again = await reconnect(env, ws);
      assert.deepEqual(again.frames(), [], "not subscribed again after a reconnect");
      // Subscribing later starts from nothing kept: no since from the refused call or the frame seen meanwhile.
      const later = env.socket.subscribe({ bookingId: "42" });
      const frame = answerSubscribe(again, "42");
      assert.equal(frame.since, undefined);
      assert.equal((await later).cursor, undefined);
    });
  }

  it("too_many_subscriptions: the subscriptions already made stay and are the only ones restored", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a" });
    const b = await subscribed(env, ws, { bookingId: "b" });
    const third = env.socket.subscribe({ bookingId: "c" });
    ws.deliver(error("too_many_subscriptions", sent(ws, "subscribe").at(-1).id));
    await assert.rejects(third, (err) => err.code === "too_many_subscriptions");
    assert.deepEqual(env.socket.subscriptions, [a.sub, b.sub]);
    const again = await reconnect(env, ws);
    assert.deepEqual(sent(again, "subscribe").map((f) => f.booking_id), ["a", "b"]);
  });

  it("unauthorized: the token is refreshed and the subscribe sent once more; unauthorized again rejects", async () => {
    const env = userSetup({ tokens: ["t1", "t2", "t3"] });
    const ws = await connected(env);
    const promise = env.socket.subscribe({ bookingId: "42" });
    const first = ws.frames()[0];
    ws.deliver(error("unauthorized", first.id));
    await settle();
    const auth = sent(ws, "auth")[0];
    assert.equal(auth.token, "t2");
    ws.deliver({ type: "authenticated", ref: auth.id });
    await settle();
    assert.equal(sent(ws, "subscribe").length, 2);
    answerSubscribe(ws, "42");
    assert.equal((await promise).state, "subscribed");

    const refused = env.socket.subscribe({ bookingId: "43" });
    const frame = sent(ws, "subscribe").at(-1);
    ws.deliver(error("unauthorized", frame.id));
    await settle();
    ws.deliver({ type: "authenticated", ref: sent(ws, "auth").at(-1).id });
    await settle();
    ws.deliver(error("unauthorized", frame.id));
    await assert.rejects(refused, (err) => err.code === "unauthorized");
    assert.deepEqual(env.socket.subscriptions.map((s) => s.bookingId), ["42"]);
  });

  it("a duplicate subscribe resolves once: one frame, the same subscription, a stray second answer changes nothing", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const first = [];
    const second = [];
    const p1 = env.socket.subscribe({ bookingId: "42", onMessage: (f) => first.push(f.type) });
    const p2 = env.socket.subscribe({ bookingId: "42", since: 99, onMessage: (f) => second.push(f.type) });
    assert.equal(sent(ws, "subscribe").length, 1, "one frame for both calls");
    const frame = answerSubscribe(ws, "42");
    assert.equal(frame.since, undefined, "the first call's options");
    const [s1, s2] = await Promise.all([p1, p2]);
    assert.equal(s1, s2);
    ws.deliver({ type: "subscribed", booking_id: "42", connection_type: "chat", ref: frame.id }); // a stray repeat: a frame of the booking, no more
    const s3 = await env.socket.subscribe({ bookingId: "42" });
    assert.equal(s3, s1, "already subscribed: the same subscription at once");
    assert.equal(sent(ws, "subscribe").length, 1, "and no frame");
    assert.deepEqual(env.socket.subscriptions, [s1]);
    ws.deliver(msg("42", 1));
    assert.deepEqual(first, ["subscribed", "subscribed", "message"], "both listeners attached, each frame once");
    assert.deepEqual(second, ["subscribed", "subscribed", "message"]);
    // The same booking with the other connection type is another subscription.
    const other = env.socket.subscribe({ bookingId: "42", connectionType: "booking" });
    answerSubscribe(ws, "42", "booking");
    assert.notEqual(await other, s1);
  });

  it("an answer that is not subscribed (a proxy that forwards the frame) rejects and stores nothing", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const promise = env.socket.subscribe({ bookingId: "42" });
    ws.deliver({ type: "message", message: { id: 1 }, ref: ws.frames()[0].id });
    await assert.rejects(promise, (err) => err.code === "backend_error" && /unexpected answer to subscribe: message/.test(err.message));
    assert.deepEqual(env.socket.subscriptions, []);
  });

  it("timeout, connection_lost and close() reject the subscribe and keep nothing", async () => {
    const env = userSetup({ requestTimeoutMs: 1000 });
    const ws = await connected(env);
    const timedOut = env.socket.subscribe({ bookingId: "a" });
    const rejected = assert.rejects(timedOut, (err) => err.code === "timeout");
    await env.clock.advance(1000);
    await rejected;
    const lost = env.socket.subscribe({ bookingId: "b", timeoutMs: 60_000 });
    ws.drop(1006);
    await assert.rejects(lost, (err) => err.code === "connection_lost");
    const pending = env.socket.subscribe({ bookingId: "c" });
    env.socket.close();
    await assert.rejects(pending, (err) => err.code === "closed");
    await assert.rejects(env.socket.subscribe({ bookingId: "d" }), (err) => err.code === "closed");
    assert.deepEqual(env.socket.subscriptions, []);
  });
});

describe("routing frames by booking", () => {
  it("each booking's frames reach its subscription only; the socket's message event sees every frame", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a" });
    const b = await subscribed(env, ws, { bookingId: "b" });
    ws.deliver(msg("a", 1));
    ws.deliver(msg("b", 2));
    ws.deliver(msg("a", 3));
    ws.deliver({ type: "presence_changed", booking_id: "b", user_id: "bob", online: true });
    assert.deepEqual(a.seen.filter((f) => f.type === "message").map((f) => f.message.id), [1, 3]);
    assert.deepEqual(b.seen.filter((f) => f.type !== "subscribed").map((f) => f.type), ["message", "presence_changed"]);
    assert.equal(b.seen.at(-1).user_id, "bob");
    assert.deepEqual([a.sub.cursor, b.sub.cursor], [3, 2], "a cursor per booking; presence_changed moves none");
    assert.equal(env.messages.filter((f) => f.type === "message").length, 3);
  });

  it("frames for bookings not subscribed, and frames without booking_id, reach the socket only and keep no cursor", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a" });
    ws.deliver(msg("zz", 1));
    ws.deliver({ type: "message", message: { id: 2, created_at: "t" } });
    ws.deliver({ type: "notification", booking_id: 7 });
    assert.deepEqual(a.seen.map((f) => f.type), ["subscribed"]);
    assert.deepEqual(env.messages.map((f) => f.type), ["subscribed", "message", "message", "notification"]);
    assert.equal(a.sub.cursor, undefined);
    assert.deepEqual(env.errors, [], "no error for them");
    const again = await reconnect(env, ws);
    assert.deepEqual(sent(again, "subscribe").map((f) => [f.booking_id, f.since]), [["a", undefined]], "only the subscription, without since");
  });

  it("a frame naming a connection_type goes to that subscription; one without goes to both of the booking", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const chat = await subscribed(env, ws, { bookingId: "42" });
    const booking = await subscribed(env, ws, { bookingId: "42", connectionType: "booking" });
    ws.deliver({ type: "presence", booking_id: "42", connection_type: "booking", users: [], connections: 0 });
    ws.deliver({ type: "booking_status", booking_id: "42", status: "confirmed" });
    assert.deepEqual(chat.seen.map((f) => f.type), ["subscribed", "booking_status"]);
    assert.deepEqual(booking.seen.map((f) => f.type), ["subscribed", "presence", "booking_status"]);
  });

  it("an error frame tagged with a booking goes to its subscription's error event and the socket's", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a" });
    const b = await subscribed(env, ws, { bookingId: "b" });
    ws.deliver({ type: "error", code: "delivery_failed", message: "missed", retryable: true, booking_id: "a" });
    assert.deepEqual(a.errors.map((f) => f.code), ["delivery_failed"]);
    assert.deepEqual(b.errors, []);
    assert.deepEqual(env.errors.map((f) => f.code), ["delivery_failed"]);
    assert.deepEqual(a.seen.map((f) => f.type), ["subscribed"], "not a message");
  });

  it("histories and repeats are per booking: the same message id in two bookings is two messages", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a" });
    const b = await subscribed(env, ws, { bookingId: "b" });
    const m = { id: 1, body: "same id", created_at: "t1" };
    ws.deliver({ type: "history", booking_id: "a", messages: [m] });
    ws.deliver({ type: "history", booking_id: "b", messages: [m] });
    ws.deliver({ ...msg("a", 1), message: m });
    const histories = (s) => s.seen.filter((f) => f.type === "history");
    assert.deepEqual(histories(a).map((f) => [f.messages.length, f.resumed]), [[1, undefined]]);
    assert.deepEqual(histories(b).map((f) => [f.messages.length, f.resumed]), [[1, undefined]], "b's first history is not a resumed one");
    assert.equal(a.seen.filter((f) => f.type === "message").length, 0, "a repeat within booking a is dropped");
  });

  it("subscription listeners: on() returns a remover, off() works, unknown events are refused, a throwing listener is reported", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const { sub } = await subscribed(env, ws, { bookingId: "a" });
    const seen = [];
    const remove = sub.on("message", (f) => seen.push(f.message?.id));
    const other = (f) => seen.push(`other ${f.message?.id}`);
    sub.on("message", other);
    sub.on("message", () => {
      throw new Error("listener bug");
    });
    const reported = [];
    const saved = globalThis.reportError;
    globalThis.reportError = (err) => reported.push(err.message);
    try {
      ws.deliver(msg("a", 1));
      remove();
      sub.off("message", other);
      ws.deliver(msg("a", 2));
    } finally {
      globalThis.reportError = saved;
    }
    assert.deepEqual(seen, [1, "other 1"]);
    assert.deepEqual(reported, ["listener bug", "listener bug"]);
    assert.throws(() => sub.on("state", () => undefined), /unknown event state/);
    assert.throws(() => sub.on("message", 1), /listener must be a function/);
  });
});

describe("sending into a booking", () => {
  it("send() and request() add booking_id; a frame naming another booking is refused", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const { sub } = await subscribed(env, ws, { bookingId: "42" });
    sub.send({ body: "hi" });
    const reply = sub.request({ body: "there" });
    const [, first, second] = ws.frames();
    assert.deepEqual(first, { body: "hi", booking_id: "42" });
    assert.deepEqual({ ...second, id: undefined }, { body: "there", booking_id: "42", id: undefined });
    ws.deliver({ ...msg("42", 8, "there"), ref: second.id });
    assert.equal((await reply).message.id, 8);
    assert.throws(() => sub.send({ body: "x", booking_id: "43" }), (err) => err.code === "invalid_frame");
    await assert.rejects(sub.request("text"), (err) => err.code === "invalid_frame");
    assert.doesNotThrow(() => sub.send({ body: "x", booking_id: "42" }));
  });

  it("a subscription of another type than the socket's adds connection_type to what it sends", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const { sub } = await subscribed(env, ws, { bookingId: "42", connectionType: "booking" });
    sub.send({ type: "status" });
    assert.deepEqual(ws.frames().at(-1), { type: "status", booking_id: "42", connection_type: "booking" });
  });

  it("presence() sends presence and resolves with the answer; a forbidden answer rejects", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const { sub, seen } = await subscribed(env, ws, { bookingId: "42" });
    const asked = sub.presence();
    const frame = ws.frames().at(-1);
    assert.deepEqual({ ...frame, id: undefined }, { type: "presence", booking_id: "42", id: undefined });
    const answer = { type: "presence", booking_id: "42", connection_type: "chat", users: ["alice", "bob"], connections: 3, ref: frame.id };
    ws.deliver(answer);
    assert.deepEqual(await asked, answer);
    assert.equal(seen.at(-1).type, "presence", "the answer is a frame of the booking too");
    const refused = sub.presence();
    ws.deliver(error("forbidden", ws.frames().at(-1).id));
    await assert.rejects(refused, (err) => err.code === "forbidden");
    const odd = sub.presence();
    ws.deliver({ type: "pong", ref: ws.frames().at(-1).id });
    await assert.rejects(odd, (err) => err.code === "backend_error");
    const { sub: booking } = await subscribed(env, ws, { bookingId: "42", connectionType: "booking" });
    booking.presence();
    assert.equal(ws.frames().at(-1).connection_type, "booking");
  });
});

describe("unsubscribe", () => {
  it("sends unsubscribe and resolves on unsubscribed; no more events, not restored, the cursor forgotten; twice sends once", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a" });
    const b = await subscribed(env, ws, { bookingId: "b" });
    ws.deliver(msg("a", 4));
    const done = a.sub.unsubscribe();
    const again = a.sub.unsubscribe();
    assert.equal(again, done, "the same promise");
    await settle();
    const frames = sent(ws, "unsubscribe");
    assert.equal(frames.length, 1);
    assert.deepEqual({ ...frames[0], id: undefined }, { type: "unsubscribe", booking_id: "a", id: undefined });
    assert.equal(a.sub.state, "unsubscribed");
    assert.equal(a.sub.cursor, undefined);
    ws.deliver(msg("a", 5));
    assert.equal(a.seen.filter((f) => f.type === "message").length, 1, "nothing after unsubscribe()");
    ws.deliver({ type: "unsubscribed", booking_id: "a", connection_type: "chat", ref: frames[0].id });
    assert.equal(await done, undefined);
    assert.deepEqual(env.socket.subscriptions, [b.sub]);
    assert.throws(() => a.sub.send({ body: "x" }), (err) => err.code === "not_subscribed");
    await assert.rejects(a.sub.request({ body: "x" }), (err) => err.code === "not_subscribed");
    await assert.rejects(a.sub.presence(), (err) => err.code === "not_subscribed");
    const fresh = await reconnect(env, ws);
    assert.deepEqual(sent(fresh, "subscribe").map((f) => f.booking_id), ["b"]);
  });

  it("subscribed again after unsubscribe: the booking's history comes whole, not as repeats", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const first = await subscribed(env, ws, { bookingId: "a" });
    const history = { type: "history", booking_id: "a", messages: [{ id: 1, created_at: "t1" }, { id: 2, created_at: "t2" }] };
    ws.deliver(history);
    const leaving = first.sub.unsubscribe();
    await settle();
    ws.deliver({ type: "unsubscribed", booking_id: "a", connection_type: "chat", ref: sent(ws, "unsubscribe")[0].id });
    await leaving;
    const second = await subscribed(env, ws, { bookingId: "a" });
    assert.notEqual(second.sub, first.sub);
    ws.deliver(history);
    const got = second.seen.find((f) => f.type === "history");
    assert.deepEqual([got.messages.length, got.resumed], [2, undefined]);
  });

  it("unsubscribe when not subscribed (its resubscribe was refused): the proxy answers unsubscribed, it resolves", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a" });
    const fresh = await reconnect(env, ws);
    fresh.deliver(error("forbidden", sent(fresh, "subscribe")[0].id));
    assert.equal(a.sub.state, "failed");
    const done = a.sub.unsubscribe();
    await settle();
    const frame = sent(fresh, "unsubscribe")[0];
    assert.ok(frame, "sent all the same: the proxy decides");
    fresh.deliver({ type: "unsubscribed", booking_id: "a", connection_type: "chat", ref: frame.id });
    await done;
    assert.equal(a.sub.state, "unsubscribed");
  });

  it("an error answer rejects (the subscription stays gone); a lost connection or a closed socket resolves", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a" });
    const b = await subscribed(env, ws, { bookingId: "b" });
    const c = await subscribed(env, ws, { bookingId: "c" });
    const refused = a.sub.unsubscribe();
    await settle();
    ws.deliver(error("invalid_message", sent(ws, "unsubscribe")[0].id));
    await assert.rejects(refused, (err) => err.code === "invalid_message");
    assert.equal(a.sub.state, "unsubscribed");
    const lost = b.sub.unsubscribe();
    await settle();
    ws.drop(1006);
    await lost;
    env.socket.close();
    assert.equal(c.sub.state, "closed");
    assert.deepEqual(env.socket.subscriptions, []);
    await c.sub.unsubscribe();
    assert.equal(sent(ws, "unsubscribe").length, 2, "none for the closed socket");
  });

  it("unsubscribe while its resubscribe is under way: sent after the subscribe is answered", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a" });
    const fresh = await reconnect(env, ws);
    const resubscribe = sent(fresh, "subscribe")[0];
    const done = a.sub.unsubscribe();
    await settle();
    assert.deepEqual(sent(fresh, "unsubscribe"), [], "not while the subscribe is unanswered");
    fresh.deliver({ type: "subscribed", booking_id: "a", connection_type: "chat", ref: resubscribe.id });
    await settle();
    const frame = sent(fresh, "unsubscribe")[0];
    assert.ok(frame);
    fresh.deliver({ type: "unsubscribed", booking_id: "a", connection_type: "chat", ref: frame.id });
    await done;
    assert.equal(a.sub.state, "unsubscribed", "the late subscribed answer did not bring it back");
    assert.deepEqual(env.socket.subscriptions, []);
  });
});

describe("after a new connection", () => {
  it("a reconnect subscribes again to every live subscription, since = its booking's cursor, before the queued frames", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a" });
    const b = await subscribed(env, ws, { bookingId: "b", since: 40 });
    const c = await subscribed(env, ws, { bookingId: "c", connectionType: "booking" });
    ws.deliver(msg("a", 7));
    ws.deliver(msg("a", 9));
    ws.drop(1006);
    a.sub.send({ body: "while away" });
    await waitOut(env);
    assert.equal(a.sub.state, "subscribed", "live while away");
    const fresh = env.last();
    fresh.accept();
    await settle();
    assert.deepEqual(
      fresh.frames().map((f) => [f.type, f.booking_id, f.connection_type, f.since]),
      [
        ["subscribe", "a", undefined, 9],
        ["subscribe", "b", undefined, 40],
        ["subscribe", "c", "booking", undefined],
        [undefined, "a", undefined, undefined],
      ],
      "subscribes first, each with its cursor; then the queued frame",
    );
    assert.deepEqual([a.sub.state, b.sub.state, c.sub.state], ["resubscribing", "resubscribing", "resubscribing"]);
    answerSubscribe(fresh, "a");
    answerSubscribe(fresh, "b");
    answerSubscribe(fresh, "c", "booking");
    // The backend answers the resubscribe with only what was missed.
    fresh.deliver({ type: "history", booking_id: "a", since: 9, messages: [{ id: 10, body: "m10", created_at: "2026-01-01T00:00:10Z" }] });
    const history = a.seen.filter((f) => f.type === "history").at(-1);
    assert.deepEqual(history.messages.map((m) => m.id), [10]);
    assert.equal(a.sub.cursor, 10);
    assert.deepEqual([a.sub.state, b.sub.state, c.sub.state], ["subscribed", "subscribed", "subscribed"]);
    assert.deepEqual(env.errors, []);
    assert.deepEqual(
      a.seen.filter((f) => f.type === "message").map((f) => f.message.id),
      [7, 9],
      "the messages before the drop, once",
    );
  });

  it("the cursor option decides the cursor; a cursor function that throws is reported and moves nothing", async () => {
    const env = userSetup({ cursor: (frame) => (frame.type === "message" ? frame.seq : undefined) });
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a" });
    ws.deliver({ ...msg("a", 1), seq: "s-100" });
    ws.deliver({ type: "reaction", booking_id: "a", seq: "s-200" });
    assert.equal(a.sub.cursor, "s-100");
    const fresh = await reconnect(env, ws);
    assert.equal(sent(fresh, "subscribe")[0].since, "s-100");

    const reported = [];
    const saved = globalThis.reportError;
    globalThis.reportError = (err) => reported.push(err.message);
    try {
      const env2 = userSetup({
        cursor: () => {
          throw new Error("bad cursor");
        },
      });
      const ws2 = await connected(env2);
      const b = await subscribed(env2, ws2, { bookingId: "b", since: 3 });
      ws2.deliver(msg("b", 4));
      assert.equal(b.sub.cursor, 3);
      assert.equal(b.seen.at(-1).type, "message", "the frame still delivered");
    } finally {
      globalThis.reportError = saved;
    }
    assert.ok(reported.includes("bad cursor"));
  });

  it("a resubscribe refused: an error event on the subscription and the socket, once; never tried again", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a" });
    const b = await subscribed(env, ws, { bookingId: "b" });
    ws.deliver(msg("a", 3));
    let fresh = await reconnect(env, ws);
    const [toA, toB] = sent(fresh, "subscribe");
    fresh.deliver(error("forbidden", toA.id, { booking_id: "a" }));
    answerSubscribe(fresh, "b");
    assert.equal(a.sub.state, "failed");
    assert.deepEqual(a.errors.map((f) => [f.code, f.booking_id, f.connection_type, f.ref]), [["forbidden", "a", "chat", toA.id]]);
    assert.deepEqual(env.errors.map((f) => [f.code, f.booking_id]), [["forbidden", "a"]]);
    assert.equal(a.sub.cursor, undefined, "its cursor is forgotten");
    assert.deepEqual(env.socket.subscriptions, [b.sub]);
    assert.equal(toB.booking_id, "b");
    fresh.deliver(msg("a", 4));
    assert.equal(a.seen.filter((f) => f.type === "message").length, 1, "no frames for a failed subscription");
    assert.throws(() => a.sub.send({ body: "x" }), (err) => err.code === "not_subscribed");
    for (let i = 0; i < 3; i += 1) fresh = await reconnect(env, fresh);
    assert.deepEqual(sent(fresh, "subscribe").map((f) => f.booking_id), ["b"], "only b, again and again");
    assert.equal(a.errors.length, 1, "one error event, not one per reconnect");
    assert.equal(env.sockets.flatMap((s) => sent(s, "subscribe")).filter((f) => f.booking_id === "a").length, 2);
  });

  it("a resubscribe that times out fails the subscription with a client error event", async () => {
    const env = userSetup({ requestTimeoutMs: 1000 });
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a" });
    await reconnect(env, ws);
    await env.clock.advance(1000);
    assert.equal(a.sub.state, "failed");
    assert.deepEqual(a.errors.map((f) => [f.code, f.source, f.booking_id]), [["timeout", "client", "a"]]);
  });

  it("a resubscribe whose socket drops before the answer is sent again on the next connection, with no error", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a", since: 5 });
    const second = await reconnect(env, ws);
    assert.equal(sent(second, "subscribe").length, 1);
    const third = await reconnect(env, second);
    assert.deepEqual(sent(third, "subscribe").map((f) => [f.booking_id, f.since]), [["a", 5]]);
    answerSubscribe(third, "a");
    assert.equal(a.sub.state, "subscribed");
    assert.deepEqual(a.errors, []);
    assert.deepEqual(env.errors, []);
  });

  it("unknown_connection: the new connection subscribes to each booking once; a subscribe answered unknown_connection is resent once", async () => {
    const env = userSetup({ tokens: ["t1", "t2", "t3", "t4"], requestTimeoutMs: 60_000 });
    const ws = await connected(env);
    await env.clock.advance(DEFAULTS.stableAfterMs);
    const a = await subscribed(env, ws, { bookingId: "a" });
    ws.deliver(msg("a", 12));
    const third = env.socket.subscribe({ bookingId: "c" });
    ws.deliver(error("unknown_connection", sent(ws, "subscribe").at(-1).id));
    await settle();
    const second = env.last();
    assert.notEqual(second, ws);
    second.accept();
    await settle();
    assert.deepEqual(sent(second, "subscribe").map((f) => [f.booking_id, f.since]), [["a", 12], ["c", undefined]], "a from its cursor; c's request resent once");
    answerSubscribe(second, "c");
    assert.equal((await third).state, "subscribed");
    // Now a's resubscribe is answered unknown_connection: one more connection, each booking once there.
    await env.clock.advance(DEFAULTS.stableAfterMs);
    second.deliver(error("unknown_connection", sent(second, "subscribe")[0].id));
    await settle();
    const last = env.last();
    assert.notEqual(last, second);
    last.accept();
    await settle();
    assert.deepEqual(sent(last, "subscribe").map((f) => f.booking_id).sort(), ["a", "c"], "a once (its resent request), c once");
    answerSubscribe(last, "a");
    answerSubscribe(last, "c");
    assert.equal(a.sub.state, "subscribed");
    assert.deepEqual(env.errors, []);
  });

  it("a switch-over before the lifetime limit: the new socket subscribes again; the old one stays until those are answered", async () => {
    const env = userSetup({ switchOverDrainMs: 60_000, pingIntervalMs: NO_PING });
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a" });
    ws.deliver(msg("a", 1));
    await env.clock.advance(DEFAULTS.maxLifetimeMs - DEFAULTS.switchOverBeforeMs);
    const fresh = env.last();
    assert.notEqual(fresh, ws);
    fresh.accept();
    await settle();
    assert.deepEqual(sent(fresh, "subscribe").map((f) => [f.booking_id, f.since]), [["a", 1]]);
    assert.equal(ws.closedWith, null, "the old socket still delivers the booking's frames");
    ws.deliver(msg("a", 2));
    fresh.deliver(msg("a", 2)); // the same frame on both during the overlap
    answerSubscribe(fresh, "a");
    await settle();
    assert.equal(ws.closedWith?.code, 1000, "closed once the new socket is subscribed");
    assert.deepEqual(a.seen.filter((f) => f.type === "message").map((f) => f.message.id), [1, 2], "each once");
    assert.deepEqual(env.states.map((s) => s.state), ["connecting", "open"], "never seen to drop");
  });

  it("the socket ending while a subscription is being restored: closed, not failed, and no error event for it", async () => {
    const env = userSetup({ tokens: ["t1"] });
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a" });
    const fresh = await reconnect(env, ws);
    assert.equal(a.sub.state, "resubscribing");
    // The proxy forgets the new connection before answering; the next one is refused (the same token).
    fresh.deliver(error("unknown_connection", "x"));
    await waitOut(env);
    assert.equal(env.sockets.length, 3);
    env.last().refuse(401);
    await settle();
    assert.equal(env.socket.state, "closed");
    assert.equal(a.sub.state, "closed");
    assert.deepEqual(a.errors, []);
    assert.deepEqual(env.errors.map((f) => f.code), ["unknown_connection", "refused"], "the socket's own errors only");
  });

  it("close() ends every subscription; nothing is sent again", async () => {
    const env = userSetup();
    const ws = await connected(env);
    const a = await subscribed(env, ws, { bookingId: "a" });
    env.socket.close();
    assert.equal(a.sub.state, "closed");
    assert.deepEqual(env.socket.subscriptions, []);
    assert.throws(() => a.sub.send({ body: "x" }), (err) => err.code === "not_subscribed");
    await env.clock.advance(60_000);
    assert.equal(env.sockets.length, 1);
  });
});

describe("a per-booking socket resumes with since", () => {
  it("reconnects with since = the id of the last message of its booking; none before any message", async () => {
    const env = setup();
    const ws = await connected(env);
    assert.equal(ws.url.searchParams.has("since"), false);
    const empty = await reconnect(env, ws);
    assert.equal(empty.url.searchParams.has("since"), false, "no message yet: no since");
    empty.deliver({ type: "history", messages: [{ id: 3, created_at: "t3" }, { id: 4, created_at: "t4" }] });
    const second = await reconnect(env, empty);
    assert.equal(second.url.searchParams.get("since"), "4", "the history's last message");
    assert.equal(second.url.searchParams.get("booking_id"), "42");
    second.deliver({ type: "history", since: 4, messages: [{ id: 5, created_at: "t5" }] });
    second.deliver({ type: "message", booking_id: "42", message: { id: 6, created_at: "t6" } });
    second.deliver({ type: "message", booking_id: "99", message: { id: 70, created_at: "t70" } });
    second.deliver({ type: "reaction", message_id: 6, emoji: "x" });
    const third = await reconnect(env, second);
    assert.equal(third.url.searchParams.get("since"), "6", "its own booking's frames only (tagged or not)");
    const histories = env.messages.filter((f) => f.type === "history");
    assert.deepEqual(histories.map((f) => [f.messages.map((m) => m.id), f.resumed]), [[[3, 4], undefined], [[5], true]]);
  });

  it("the since goes on a switch-over's new socket too, and it can subscribe to other bookings", async () => {
    const env = setup({ pingIntervalMs: NO_PING });
    const ws = await connected(env);
    ws.deliver({ type: "message", message: { id: 8, created_at: "t8" } });
    const other = await subscribed(env, ws, { bookingId: "43" });
    ws.deliver(msg("43", 20));
    await env.clock.advance(DEFAULTS.maxLifetimeMs - DEFAULTS.switchOverBeforeMs);
    const fresh = env.last();
    assert.equal(fresh.url.searchParams.get("since"), "8");
    fresh.accept();
    await settle();
    assert.deepEqual(sent(fresh, "subscribe").map((f) => [f.booking_id, f.since]), [["43", 20]]);
    assert.equal(other.sub.cursor, 20);
  });
});
