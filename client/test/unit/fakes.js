// A controlled clock and a fake WebSocket for the unit tests: nothing here touches the network
// or the real timers, so every test decides exactly when each event happens.

/** A clock whose time moves only when a test calls advance(). */
export class FakeClock {
  constructor(start = 1_700_000_000_000) {
    this._now = start;
    this._seq = 0;
    this._timers = new Map();
  }

  now() {
    return this._now;
  }

  setTimeout(fn, ms) {
    const id = ++this._seq;
    this._timers.set(id, { at: this._now + Math.max(0, ms || 0), fn, id });
    return id;
  }

  clearTimeout(id) {
    this._timers.delete(id);
  }

  /** Timers still due, soonest first: [{at, id}]. */
  pending() {
    return [...this._timers.values()].sort((a, b) => a.at - b.at || a.id - b.id);
  }

  /** Move time forward by ms, running every timer due on the way (and the promises they start). */
  async advance(ms) {
    const until = this._now + ms;
    await settle();
    for (;;) {
      const next = this.pending().find((t) => t.at <= until);
      if (!next) break;
      this._timers.delete(next.id);
      this._now = Math.max(this._now, next.at);
      next.fn();
      await settle();
    }
    this._now = until;
    await settle();
  }
}

/** Let every queued promise callback run (several rounds: chains of awaits). */
export async function settle() {
  for (let i = 0; i < 20; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * A WebSocket look-alike. `browser` mode has no .on(): like a browser it never tells the
 * HTTP status of a refused handshake. Node mode emits "unexpected-response" like the ws package.
 */
export function fakeWebSocketClass({ browser = false } = {}) {
  const sockets = [];

  class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;

    constructor(url, protocols) {
      this.url = new URL(url);
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      this._listeners = {};
      this._emitter = {};
      sockets.push(this);
    }

    addEventListener(type, fn) {
      (this._listeners[type] ??= []).push(fn);
    }

    removeEventListener(type, fn) {
      this._listeners[type] = (this._listeners[type] ?? []).filter((f) => f !== fn);
    }

    _fire(type, event) {
      for (const fn of this._listeners[type] ?? []) fn(event);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error(`send in readyState ${this.readyState}`);
      this.sent.push(data);
    }

    /** The client's close: completes at once (the fake server answers immediately). */
    close(code = 1000, reason = "") {
      if (this.readyState >= 2) return;
      this.closedWith = { code, reason };
      this.readyState = 3;
      queueMicrotask(() => this._fire("close", { code, reason, wasClean: true }));
    }

    terminate() {
      this.close(1006, "");
    }

    // -- what the test (the "server") does --

    /** Frames the client sent, parsed. */
    frames() {
      return this.sent.map((text) => JSON.parse(text));
    }

    accept() {
      this.readyState = 1;
      this._fire("open", {});
    }

    /** The server sends a frame (an object is serialized). */
    deliver(frame) {
      this._fire("message", { data: typeof frame === "string" ? frame : JSON.stringify(frame) });
    }

    /** The server (or the network) ends the connection. */
    drop(code = 1006, reason = "") {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this._fire("close", { code, reason, wasClean: code !== 1006 });
    }

    /** The handshake is answered with an HTTP status instead of 101. */
    refuse(status) {
      if (!browser) {
        const listeners = this._emitter["unexpected-response"] ?? [];
        if (listeners.length) {
          for (const fn of listeners) fn({}, { statusCode: status, resume() {} });
          return;
        }
        this._fire("error", { message: `Unexpected server response: ${status}` });
      } else {
        this._fire("error", {});
      }
      this.drop(1006);
    }
  }

  if (!browser) {
    FakeWebSocket.prototype.on = function on(type, fn) {
      (this._emitter[type] ??= []).push(fn);
      return this;
    };
  }

  return { FakeWebSocket, sockets };
}

/** A JWT-shaped token (unsigned) with the given claims: enough for the client's exp check. */
export function fakeJwt(claims) {
  const enc = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  return `${enc({ alg: "HS256", typ: "JWT" })}.${enc(claims)}.c2lnbmF0dXJl`;
}
