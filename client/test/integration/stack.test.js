// The client against the local stack over real sockets (the ws package as Node's WebSocket).
// Each test starts its own stack (python -m local_gateway) and stops it.
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";

import { WebSocket } from "ws";

import { ChatSocket } from "../../src/index.js";
import { Stack, countingWebSocket, forgedToken, newBooking, pythonAvailable, quietPorts, sleep, until } from "./stack.js";

const skip = pythonAvailable() ? false : "the project's .venv is missing (make venv)";

/** Every client a test made: closed after each test, whatever happened (a live one keeps node running). */
const live = new Set();

/** A ChatSocket that records what it emits: message bodies (history and messages), states, errors. */
function client(stack, user, booking, options = {}) {
  const { Counted, opened } = countingWebSocket();
  const socket = new ChatSocket({
    url: stack.ws,
    type: "chat",
    bookingId: booking,
    token: () => stack.token(user),
    WebSocket: Counted,
    ...options,
  });
  live.add(socket);
  const seen = { bodies: [], frames: [], states: [], errors: [], opened };
  socket.on("message", (frame) => {
    seen.frames.push(frame);
    if (frame.type === "history") seen.bodies.push(...frame.messages.map((m) => m.body));
    if (frame.type === "message") seen.bodies.push(frame.message.body);
  });
  socket.on("state", (state, detail) => seen.states.push({ state, ...detail }));
  socket.on("error", (frame) => seen.errors.push(frame));
  return { socket, seen };
}

function count(list, value) {
  return list.filter((v) => v === value).length;
}

describe("against the local stack", { skip }, () => {
  afterEach(() => {
    for (const socket of live) socket.close();
    live.clear();
  });

  describe("one stack", () => {
    let stack;
    before(async () => {
      stack = await Stack.start();
    });
    after(async () => {
      assert.equal(await stack.stop(), 0, stack.output.slice(-3000));
    });

    it("two clients chat; request() resolves with the frame that carries its ref", async () => {
      const booking = newBooking();
      const alice = client(stack, "alice", booking);
      const bob = client(stack, "bob", booking);
      await Promise.all([alice.socket.connect(), bob.socket.connect()]);
      await until(() => alice.seen.bodies.length && bob.seen.bodies.length, "both histories");
      const reply = await alice.socket.request({ body: "Hello Bob", client_id: "c-1" });
      assert.equal(reply.type, "message");
      assert.equal(reply.message.body, "Hello Bob");
      assert.equal(typeof reply.ref, "string");
      await until(() => bob.seen.bodies.includes("Hello Bob"), "bob gets alice's message");
      const bobsCopy = bob.seen.frames.find((f) => f.type === "message");
      assert.equal(bobsCopy.ref, undefined, "only the sender's copy carries the ref");
      bob.socket.send({ body: "Hi Alice" });
      await until(() => alice.seen.bodies.includes("Hi Alice"), "alice gets bob's message");
      // An error answer rejects the request with the proxy's error frame.
      await assert.rejects(
        alice.socket.request({ type: "reaction", emoji: "👍", message_id: 987654321 }),
        (err) => err.code === "backend_error" && err.frame.ref !== undefined,
      );
      for (const c of [alice, bob]) {
        assert.equal(count(c.seen.bodies, "Hello Bob"), 1);
        assert.equal(count(c.seen.bodies, "Hi Alice"), 1);
        assert.deepEqual(c.seen.errors, []);
        c.socket.close();
      }
    });

    it("the proxy forgets the connection (its item deleted): a new connection, and the request goes through", async () => {
      const booking = newBooking();
      const alice = client(stack, "alice", booking);
      const bob = client(stack, "bob", booking);
      await Promise.all([alice.socket.connect(), bob.socket.connect()]);
      await until(() => alice.seen.frames.some((f) => f.type === "history"), "alice's history");
      const before = await stack.chatConnections(booking, "alice");
      assert.equal(before.length, 1, "alice's connection is stored");
      await stack.deleteConnection(before[0]);
      assert.deepEqual(await stack.chatConnections(booking, "alice"), []);

      const body = "after the proxy forgot";
      const reply = await alice.socket.request({ body });
      assert.equal(reply.type, "message");
      assert.equal(reply.message.body, body);
      assert.equal(alice.seen.opened.length, 2, "one new connection");
      const sentOn = alice.seen.opened.map((ws) => ws.sentFrames.filter((f) => f.body === body).length);
      assert.deepEqual(sentOn, [1, 1], "sent once on the forgotten connection, resent once on the new one");
      const after = await stack.chatConnections(booking, "alice");
      assert.equal(after.length, 1, "the new connection is stored");
      assert.notEqual(after[0].connectionId, before[0].connectionId);
      await until(() => alice.seen.opened[0].readyState === WebSocket.CLOSED, "the forgotten socket is closed");
      const states = alice.seen.states.map((s) => s.state).filter((state, i, all) => state !== all[i - 1]);
      assert.deepEqual(states, ["connecting", "open", "reconnecting", "open"]);
      assert.ok(alice.seen.states.some((s) => s.state === "reconnecting" && /unknown_connection/.test(s.reason)));
      assert.deepEqual(alice.seen.errors, [], "recovered, not surfaced");
      await until(() => bob.seen.bodies.includes(body), "bob gets it");
      bob.socket.send({ body: "on the new connection" });
      await until(() => alice.seen.bodies.includes("on the new connection"), "alice gets bob's next message");
      assert.equal(count(alice.seen.bodies, body), 1);
      assert.equal(count(bob.seen.bodies, body), 1);
      alice.socket.close();
      bob.socket.close();
    });

    it("a refused handshake (a token the backend rejects) is not retried: connect() rejects with 401", async () => {
      const forged = forgedToken("mallory", 3600, "not-the-backend-secret");
      const { Counted, opened } = countingWebSocket();
      const socket = new ChatSocket({ url: stack.ws, bookingId: newBooking(), token: async () => forged, WebSocket: Counted });
      live.add(socket);
      await assert.rejects(socket.connect(), (err) => err.code === "refused" && err.status === 401);
      await sleep(1500);
      assert.equal(opened.length, 1);
      assert.equal(socket.state, "closed");
    });

    it("bearer transport connects the same way", async () => {
      const booking = newBooking();
      const alice = client(stack, "alice", booking, { transport: "bearer" });
      await alice.socket.connect();
      await until(() => alice.seen.bodies.length === 1, "the history");
      assert.equal(alice.seen.opened[0].protocol, "bearer");
      assert.equal(new URL(alice.seen.opened[0].url).searchParams.get("token"), null);
      alice.socket.close();
    });

    it("an expired token is refreshed in-band and the refused message goes through", async () => {
      const booking = newBooking();
      let calls = 0;
      const tokens = [];
      const token = async () => {
        calls += 1;
        const value = await stack.token("alice", calls === 1 ? 2 : undefined);
        tokens.push(value);
        return value;
      };
      const alice = client(stack, "alice", booking, { token, proactiveRefresh: false });
      const bob = client(stack, "bob", booking);
      await Promise.all([alice.socket.connect(), bob.socket.connect()]);
      await sleep(3000); // the first token has expired; the connection stays
      assert.equal(alice.socket.state, "open");
      const reply = await alice.socket.request({ body: "after expiry" });
      assert.equal(reply.message.body, "after expiry");
      assert.equal(alice.seen.opened.length, 1, "refreshed in-band, not by a new connection");
      assert.equal(calls, 2);
      await until(() => bob.seen.bodies.includes("after expiry"), "bob gets it");
      assert.equal(count(alice.seen.bodies, "after expiry"), 1);
      assert.deepEqual(alice.seen.errors, [], "the unauthorized answer was handled, not surfaced");
      assert.ok(!stack.output.includes(tokens[0]) && !stack.output.includes(tokens[1]), "no token in the logs");
      alice.socket.close();
      bob.socket.close();
    });

    it("a JWT close to its exp is refreshed ahead of it, without any refused message", async () => {
      const booking = newBooking();
      let calls = 0;
      const token = async () => {
        calls += 1;
        return stack.token("alice", calls === 1 ? 4 : undefined);
      };
      const alice = client(stack, "alice", booking, { token, refreshBeforeExpiryMs: 2500, minRefreshIntervalMs: 0 });
      await alice.socket.connect();
      await sleep(5000);
      const reply = await alice.socket.request({ body: "still here" });
      assert.equal(reply.message.body, "still here");
      assert.equal(calls, 2);
      assert.equal(alice.seen.opened.length, 1);
      assert.deepEqual(alice.seen.errors, []);
      alice.socket.close();
    });
  });

  it("the stack stops and starts again on the same ports: both clients come back on their own, outage frames arrive once", async () => {
    const ports = await quietPorts(); // the restart below finds them free
    let stack = await Stack.start({ ports });
    const booking = newBooking();
    // Bob retries at once, Alice only every ~2 s: Bob is back well before Alice sends her outage frames.
    const alice = client(stack, "alice", booking, { random: () => 0.99, reconnectMaxDelayMs: 2000 });
    const bob = client(stack, "bob", booking, { random: () => 0.01, reconnectMaxDelayMs: 2000 });
    try {
      await Promise.all([alice.socket.connect(), bob.socket.connect()]);
      alice.socket.send({ body: "before" });
      await until(() => bob.seen.bodies.includes("before"), "bob gets 'before'");

      assert.equal(await stack.stop(), 0);
      await until(() => alice.socket.state === "reconnecting" && bob.socket.state === "reconnecting", "both notice");
      alice.socket.send({ body: "alice during the outage 1" });
      bob.socket.send({ body: "bob during the outage" });
      alice.socket.send({ body: "alice during the outage 2" });
      assert.equal(alice.socket.queued, 2);
      await sleep(1500); // a few failed attempts against closed ports

      stack = await Stack.start({ ports });
      await until(() => alice.socket.state === "open" && bob.socket.state === "open", "both reconnect", 30_000);
      const outage = ["alice during the outage 1", "bob during the outage", "alice during the outage 2"];
      await until(
        () => outage.every((b) => alice.seen.bodies.includes(b) && bob.seen.bodies.includes(b)),
        "every outage frame reaches both",
      );
      bob.socket.send({ body: "after" });
      await until(() => alice.seen.bodies.includes("after"), "the chat goes on");
      await sleep(500);
      for (const c of [alice, bob]) {
        for (const body of [...outage, "before", "after"]) assert.equal(count(c.seen.bodies, body), 1, `${body} once`);
        assert.ok(c.seen.states.some((s) => s.state === "reconnecting" && s.phase === "waiting" && s.delayMs >= 0));
      }
      // Sent in order on the new socket (the proxy runs each frame in its own invocation, so
      // the backend may store them in either order, as on AWS).
      const resent = alice.seen.opened.flatMap((ws) => ws.sentFrames.map((f) => f.body)).filter((b) => b?.startsWith("alice during"));
      assert.deepEqual(resent, ["alice during the outage 1", "alice during the outage 2"], "sent once each, in order");
    } finally {
      alice.socket.close();
      bob.socket.close();
      await stack.stop();
    }
  });

  it("with idle and lifetime limits short, a client stays connected across both", async () => {
    const stack = await Stack.start({ args: ["--idle-timeout", "1.5", "--max-lifetime", "5"] });
    const booking = newBooking();
    const limits = {
      pingIntervalMs: 600,
      pongTimeoutMs: 3000,
      maxLifetimeMs: 5000,
      switchOverBeforeMs: 2000,
      switchOverDrainMs: 1000,
      stableAfterMs: 500,
    };
    const alice = client(stack, "alice", booking, limits);
    const bob = client(stack, "bob", booking, limits);
    try {
      await Promise.all([alice.socket.connect(), bob.socket.connect()]);
      // A bare socket (no keepalive) next to them: the gateway closes it when idle.
      const bare = new WebSocket(`${stack.ws}?type=chat&booking_id=${booking}&token=${await stack.token("carol")}`);
      const bareClosed = new Promise((resolveClose) => bare.on("close", (code) => resolveClose(code)));
      await sleep(4000); // quiet: nobody sends, only the keepalive
      assert.equal(await bareClosed, 1001, "the idle limit is live");
      const sent = [];
      const started = Date.now();
      while (Date.now() - started < 8000) {
        const body = `tick ${sent.length}`;
        sent.push(body);
        bob.socket.send({ body });
        await sleep(400);
      }
      await until(() => sent.every((b) => alice.seen.bodies.includes(b)), "every tick reaches alice");
      for (const body of sent) assert.equal(count(alice.seen.bodies, body), 1, `${body} once`);
      for (const c of [alice, bob]) {
        assert.deepEqual(c.seen.states.map((s) => s.state), ["connecting", "open"], "never seen to drop");
        assert.ok(c.seen.opened.length >= 3, `${c.seen.opened.length} sockets: switched over at least twice`);
        assert.deepEqual(c.seen.errors, []);
      }
    } finally {
      alice.socket.close();
      bob.socket.close();
      assert.equal(await stack.stop(), 0);
    }
  });
});
