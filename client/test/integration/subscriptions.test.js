// One socket per user against the local stack over real sockets: a user-level socket
// subscribed to three bookings, next to per-booking sockets of the other party.
//
// A stack whose proxy does not know the subscribe frame yet skips these tests (asked at run
// time, below): they run as soon as it answers subscribe with anything else.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";

import { WebSocket } from "ws";

import { ChatSocket } from "../../src/index.js";
import { Stack, countingWebSocket, newBooking, pythonAvailable, quietPorts, sleep, until } from "./stack.js";

const noPython = pythonAvailable() ? false : "the project's .venv is missing (make venv)";

/**
 * Why the stack cannot run these tests, or null. Asked with a subscribe frame on a
 * per-booking socket (which every version takes): a proxy without subscriptions answers
 * `invalid_message`, or forwards the frame to the backend's message route as an ordinary
 * message, which the reference backend refuses as an unknown message type.
 */
async function subscriptionsUnsupported(stack) {
  const probe = new ChatSocket({ url: stack.ws, bookingId: newBooking(), token: () => stack.token("probe"), WebSocket });
  try {
    await probe.connect();
    await probe.request({ type: "subscribe", booking_id: newBooking() });
    return null;
  } catch (err) {
    if (err?.code === "invalid_message") {
      return "the local stack answers a subscribe frame with invalid_message: its proxy has no subscriptions yet";
    }
    if (err?.code === "backend_error" && /unknown message type 'subscribe'/.test(String(err.message))) {
      return "the local stack's proxy forwards a subscribe frame to the backend as an ordinary message: it has no subscriptions yet";
    }
    return null; // any other answer: the tests run (and say what is wrong)
  } finally {
    probe.close();
  }
}

const live = new Set();

/**
 * Bodies in a list of frames: history messages and message frames. The reference backend
 * opens every booking with a welcome message from its host (again after a restart, which
 * empties it): it is left out, so that only what the tests send is compared.
 */
function bodies(frames) {
  const out = [];
  const sent = (m) => m.user_id !== "host";
  for (const frame of frames) {
    if (frame.type === "history") out.push(...frame.messages.filter(sent).map((m) => m.body));
    if (frame.type === "message" && sent(frame.message)) out.push(frame.message.body);
  }
  return out;
}

/** The id of the last message in a list of frames. */
function lastMessageId(frames) {
  let id;
  for (const frame of frames) {
    if (frame.type === "history" && frame.messages.length) id = frame.messages.at(-1).id;
    if (frame.type === "message") id = frame.message.id;
  }
  return id;
}

function count(list, value) {
  return list.filter((v) => v === value).length;
}

/** A ChatSocket that records what it emits. `bookingId` undefined: the user's own socket. */
function client(stack, user, bookingId, options = {}) {
  const { Counted, opened } = countingWebSocket();
  const socket = new ChatSocket({ url: stack.ws, bookingId, token: () => stack.token(user), WebSocket: Counted, ...options });
  live.add(socket);
  const seen = { frames: [], states: [], errors: [], opened };
  socket.on("message", (frame) => seen.frames.push(frame));
  socket.on("state", (state, detail) => seen.states.push({ state, ...detail }));
  socket.on("error", (frame) => seen.errors.push(frame));
  return { socket, seen };
}

/** Subscribe `alice` to every booking and wait for their histories; per booking: the subscription and the frames it emitted. */
async function subscribeAll(alice, bookings) {
  const out = {};
  await Promise.all(
    bookings.map(async (bookingId) => {
      const frames = [];
      const errors = [];
      const sub = await alice.socket.subscribe({ bookingId, onMessage: (f) => frames.push(f), onError: (f) => errors.push(f) });
      out[bookingId] = { sub, frames, errors };
    }),
  );
  await until(() => bookings.every((b) => out[b].frames.some((f) => f.type === "history")), "each booking's initial history");
  return out;
}

/** The subscribe frames a client sent on its `n`th socket. */
function subscribesOn(c, n) {
  return c.seen.opened[n].sentFrames.filter((f) => f.type === "subscribe");
}

describe("one socket per user, against the local stack", { skip: noPython }, () => {
  let stack;
  let unsupported = null;

  before(async () => {
    stack = await Stack.start({ ports: await quietPorts() }); // the last test restarts it on them
    unsupported = await subscriptionsUnsupported(stack);
  });

  afterEach(() => {
    for (const socket of live) socket.close();
    live.clear();
  });

  after(async () => {
    assert.equal(await stack.stop(), 0, stack.output.slice(-3000));
  });

  it("a user-level socket subscribed to three bookings gets each booking's traffic once, tagged, and sends into each", async (t) => {
    if (unsupported) return t.skip(unsupported);
    const bookings = [newBooking(), newBooking(), newBooking()];
    const alice = client(stack, "alice", undefined);
    const bobs = bookings.map((b) => client(stack, "bob", b));
    await Promise.all([alice.socket.connect(), ...bobs.map((b) => b.socket.connect())]);
    assert.equal(new URL(alice.seen.opened[0].url).searchParams.has("booking_id"), false, "a user-level socket");
    const subs = await subscribeAll(alice, bookings);
    assert.deepEqual(alice.socket.subscriptions.map((s) => s.bookingId).sort(), [...bookings].sort());

    await Promise.all(bookings.map((b, i) => bobs[i].socket.request({ body: `bob in ${b}` })));
    await until(() => bookings.every((b) => bodies(subs[b].frames).includes(`bob in ${b}`)), "bob's message in each subscription");
    for (const b of bookings) {
      const reply = await subs[b].sub.request({ body: `alice in ${b}` });
      assert.equal(reply.type, "message");
      assert.equal(reply.booking_id, b, "the sender's copy is tagged too");
      assert.equal(reply.message.body, `alice in ${b}`);
    }
    await until(() => bookings.every((b, i) => bodies(bobs[i].seen.frames).includes(`alice in ${b}`)), "alice's messages reach bob");
    const present = await subs[bookings[0]].sub.presence();
    assert.equal(present.type, "presence");
    assert.equal(present.booking_id, bookings[0]);
    assert.deepEqual([...present.users].sort(), ["alice", "bob"]);
    assert.ok(present.connections >= 2, `${present.connections} connections`);
    await sleep(500); // a repeat would arrive by now

    for (const [i, b] of bookings.entries()) {
      const got = bodies(subs[b].frames);
      assert.equal(count(got, `bob in ${b}`), 1, `bob's message once in ${b}`);
      assert.equal(count(got, `alice in ${b}`), 1, `alice's own once in ${b}`);
      for (const other of bookings.filter((o) => o !== b)) {
        assert.ok(!got.some((body) => body.endsWith(other)), `nothing of ${other} in ${b}'s subscription`);
        assert.ok(!bodies(bobs[i].seen.frames).some((body) => body.endsWith(other)), `nothing of ${other} on bob's socket of ${b}`);
      }
      assert.ok(subs[b].frames.every((f) => f.booking_id === b), `every frame of ${b}'s subscription carries its booking_id`);
      assert.equal(count(bodies(bobs[i].seen.frames), `alice in ${b}`), 1);
      assert.deepEqual(subs[b].errors, []);
    }
    const all = bodies(alice.seen.frames);
    for (const b of bookings) assert.equal(count(all, `bob in ${b}`), 1, "once on the socket, whatever the paths");
    assert.deepEqual(alice.seen.errors, []);
    await subs[bookings[2]].sub.unsubscribe();
    assert.deepEqual(alice.socket.subscriptions.map((s) => s.bookingId).sort(), bookings.slice(0, 2).sort());
  });

  it("a dropped socket: every subscription restored from its cursor, what was missed arrives once, in order", async (t) => {
    if (unsupported) return t.skip(unsupported);
    const bookings = [newBooking(), newBooking(), newBooking()];
    // Each waits ~3 s before reconnecting: what is sent meanwhile reaches them only through `since`.
    const slow = { random: () => 0.99, reconnectBaseDelayMs: 3000, reconnectMaxDelayMs: 3000 };
    const alice = client(stack, "alice", undefined, slow);
    const bobs = bookings.map((b) => client(stack, "bob", b, slow));
    await Promise.all([alice.socket.connect(), ...bobs.map((b) => b.socket.connect())]);
    const subs = await subscribeAll(alice, bookings);
    for (const [i, b] of bookings.entries()) await bobs[i].socket.request({ body: `before ${b}` });
    await until(() => bookings.every((b) => bodies(subs[b].frames).includes(`before ${b}`)), "the first messages");
    const cursors = Object.fromEntries(bookings.map((b) => [b, subs[b].sub.cursor]));
    for (const b of bookings) assert.equal(typeof cursors[b], "number", `a cursor for ${b}`);

    alice.seen.opened[0].terminate();
    await until(() => alice.socket.state === "reconnecting", "alice notices");
    const missed = (b) => [`missed 1 ${b}`, `missed 2 ${b}`];
    for (const [i, b] of bookings.entries()) for (const body of missed(b)) await bobs[i].socket.request({ body });
    await until(() => alice.socket.state === "open" && alice.socket.subscriptions.every((s) => s.state === "subscribed"), "alice is back, subscribed");
    assert.deepEqual(
      subscribesOn(alice, 1).map((f) => [f.booking_id, f.since]).sort(),
      bookings.map((b) => [b, cursors[b]]).sort(),
      "each booking subscribed again once, from its cursor",
    );
    await until(() => bookings.every((b) => missed(b).every((body) => bodies(subs[b].frames).includes(body))), "the missed messages");
    await sleep(500);
    for (const b of bookings) {
      const got = bodies(subs[b].frames);
      assert.deepEqual(got, [`before ${b}`, ...missed(b)], `${b}: everything once, in order`);
      const resumed = subs[b].frames.filter((f) => f.type === "history").at(-1);
      assert.equal(resumed.since, cursors[b], "the backend answered from the cursor");
      assert.equal(resumed.resumed, true);
    }
    assert.deepEqual(alice.seen.errors, []);

    // A per-booking socket resumes the same way, with since in its URL.
    const bob = bobs[0];
    const lastId = lastMessageId(bob.seen.frames);
    assert.equal(typeof lastId, "number");
    bob.seen.opened[0].terminate();
    await until(() => bob.socket.state === "reconnecting", "bob notices");
    await subs[bookings[0]].sub.request({ body: "while bob was away" });
    await until(() => bob.socket.state === "open", "bob is back", 30_000);
    assert.equal(new URL(bob.seen.opened.at(-1).url).searchParams.get("since"), String(lastId), "his last message's id");
    await until(() => bodies(bob.seen.frames).includes("while bob was away"), "bob gets what he missed");
    await sleep(500);
    const history = bob.seen.frames.filter((f) => f.type === "history").at(-1);
    assert.equal(history.since, lastId);
    assert.deepEqual(history.messages.map((m) => m.body), ["while bob was away"], "only what he missed");
    assert.equal(count(bodies(bob.seen.frames), "while bob was away"), 1);
  });

  // Last: it stops the shared stack and starts it again on the same ports.
  it("the stack stops and starts again: every subscription restored, nothing missed or doubled", async (t) => {
    if (unsupported) return t.skip(unsupported);
    const bookings = [newBooking(), newBooking(), newBooking()];
    const alice = client(stack, "alice", undefined, { reconnectMaxDelayMs: 2000 });
    const bobs = bookings.map((b) => client(stack, "bob", b, { reconnectMaxDelayMs: 2000 }));
    await Promise.all([alice.socket.connect(), ...bobs.map((b) => b.socket.connect())]);
    const subs = await subscribeAll(alice, bookings);
    for (const [i, b] of bookings.entries()) await bobs[i].socket.request({ body: `before ${b}` });
    await until(() => bookings.every((b) => bodies(subs[b].frames).includes(`before ${b}`)), "the first messages");

    const ports = stack.ports;
    assert.equal(await stack.stop(), 0);
    await until(() => alice.socket.state === "reconnecting", "alice notices");
    const during = subs[bookings[0]].sub.request({ body: "alice during the outage" }, { timeoutMs: 60_000 });
    await sleep(1000);
    stack = await Stack.start({ ports }); // the reference backend starts empty
    await until(
      () => alice.socket.state === "open" && bobs.every((b) => b.socket.state === "open") && alice.socket.subscriptions.length === 3 && alice.socket.subscriptions.every((s) => s.state === "subscribed"),
      "everyone back, every subscription restored",
      30_000,
    );
    const reply = await during;
    assert.equal(reply.message.body, "alice during the outage");
    const resubscribed = alice.seen.opened.slice(1).flatMap((ws) => ws.sentFrames.filter((f) => f.type === "subscribe"));
    assert.deepEqual(resubscribed.map((f) => f.booking_id).sort(), [...bookings].sort(), "each booking subscribed again, once");

    for (const [i, b] of bookings.entries()) await bobs[i].socket.request({ body: `after ${b}` });
    for (const b of bookings) await subs[b].sub.request({ body: `alice after ${b}` });
    await until(() => bookings.every((b) => bodies(subs[b].frames).includes(`after ${b}`)), "bob's messages after the restart");
    await until(() => bookings.every((b, i) => bodies(bobs[i].seen.frames).includes(`alice after ${b}`)), "alice's messages after the restart");
    await sleep(500);
    for (const b of bookings) {
      const got = bodies(subs[b].frames);
      const expected = [`before ${b}`, `after ${b}`, `alice after ${b}`];
      if (b === bookings[0]) expected.push("alice during the outage");
      assert.deepEqual([...got].sort(), expected.sort(), `${b}: each message once`);
      assert.ok(subs[b].frames.every((f) => f.booking_id === b));
    }
    // What alice sent during the outage is stored once.
    const carol = client(stack, "carol", bookings[0]);
    await carol.socket.connect();
    await until(() => carol.seen.frames.some((f) => f.type === "history"), "carol's history");
    assert.equal(count(bodies(carol.seen.frames), "alice during the outage"), 1);
    // The token provider is the stack itself: down during the outage, which the client says (and retries).
    const unexpected = alice.seen.errors.filter((e) => !(e.source === "client" && e.code === "token_unavailable"));
    assert.deepEqual(unexpected, []);
  });
});
