// @ws-proxy/client: a chat connection through the ws-proxy WebSocket API that stays up.
//
// One ChatSocket is one logical connection (a chat, booking, notification or feed
// connection). Underneath it opens as many WebSockets as it takes: it pings inside API
// Gateway's 10-minute idle limit, opens a new socket before the 2-hour limit and switches
// over to it, reconnects with capped full-jitter backoff after any close that is not the
// caller's, switches over to a new connection when the proxy answers `unknown_connection`,
// refreshes the token in-band (`auth`), correlates requests with replies (`id` -> `ref`),
// re-joins history parts and drops messages it has already emitted.
// One socket can also carry many bookings (one socket per user): subscribe() joins a
// booking's channel, routes the frames tagged with that booking to the subscription, keeps
// a cursor per booking and subscribes again, from that cursor, on every new connection.
// No runtime dependencies: browsers and Node 18+ (pass `WebSocket` where there is no global).

/** @typedef {"chat" | "booking" | "notification" | "feed"} ConnectionType */
/** @typedef {"connecting" | "open" | "reconnecting" | "closed"} SocketState */

const TYPES = ["chat", "booking", "notification", "feed"];
const NEEDS_BOOKING = new Set(["chat", "booking"]);
/** The types whose channel is a booking's: what a subscription can join. */
const BOOKING_TYPES = ["chat", "booking"];
const BOOKING_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** API Gateway's message limit, both ways. */
export const MAX_FRAME_BYTES = 128 * 1024;
const OPEN = 1;

/** Defaults for every option that has one (milliseconds unless said otherwise). */
export const DEFAULTS = Object.freeze({
  type: "chat",
  transport: "query",
  /** A ping after this long without a frame sent (API Gateway closes after 10 min idle). */
  pingIntervalMs: 4 * 60 * 1000,
  /** No answer to a keepalive ping within this long: the socket is dead, reconnect. */
  pongTimeoutMs: 30 * 1000,
  /** API Gateway's connection lifetime. */
  maxLifetimeMs: 2 * 60 * 60 * 1000,
  /** Open the next socket this long before the lifetime ends, then switch over. */
  switchOverBeforeMs: 5 * 60 * 1000,
  /** How long the old socket may still deliver answers to requests sent on it after a switch. */
  switchOverDrainMs: 5 * 1000,
  /** A handshake must finish within this long, and so must each call of the token provider. */
  connectTimeoutMs: 15 * 1000,
  /** Backoff before reconnect attempt n: random(0, min(maxDelay, baseDelay * 2^n)). */
  reconnectBaseDelayMs: 500,
  reconnectMaxDelayMs: 30 * 1000,
  /** A socket open this long resets the backoff. */
  stableAfterMs: 10 * 1000,
  /** Consecutive failed attempts before giving up ("closed"); Infinity: never. */
  maxAttempts: Infinity,
  /** Frames held while not connected; send() throws past this. */
  queueLimit: 100,
  requestTimeoutMs: 10 * 1000,
  /** Refresh a JWT ahead of its `exp` (false: only after an `unauthorized` answer). */
  proactiveRefresh: true,
  /** Refresh a JWT this long before its `exp`. */
  refreshBeforeExpiryMs: 60 * 1000,
  /** Refresh no more often than this, whatever the provider returns. */
  minRefreshIntervalMs: 30 * 1000,
  /** How many message keys are remembered to drop repeats. */
  dedupeLimit: 10000,
});

/**
 * An error of the client itself (`source: "client"`) or an error frame of the proxy
 * (`source: "proxy"`, `frame` set) that rejected a request.
 */
export class ChatSocketError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{frame?: object, status?: number, retryable?: boolean, cause?: unknown}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = "ChatSocketError";
    /** @type {string} */
    this.code = code;
    /** @type {object | undefined} the proxy's error frame, when the proxy answered one */
    this.frame = extra.frame;
    /** @type {number | undefined} the HTTP status of a refused handshake, when known */
    this.status = extra.status;
    /** @type {boolean} */
    this.retryable = extra.retryable ?? false;
  }

  /** The error as an error frame (what the "error" event carries for the client's own errors). */
  toFrame() {
    if (this.frame) return this.frame;
    const frame = { type: "error", code: this.code, message: this.message, retryable: this.retryable, source: "client" };
    if (this.status !== undefined) frame.status = this.status;
    return frame;
  }
}

/**
 * The `exp` of a JWT in milliseconds since the epoch, or undefined when the token is not a
 * JWT or has no numeric `exp`. The signature is not checked (the backend does that).
 * @param {string} token
 * @returns {number | undefined}
 */
export function jwtExpiry(token) {
  if (typeof token !== "string") return undefined;
  const parts = token.split(".");
  if (parts.length !== 3 || !parts[1]) return undefined;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
    const claims = JSON.parse(decodeBase64(padded));
    const exp = claims && typeof claims === "object" ? claims.exp : undefined;
    return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

function decodeBase64(text) {
  const binary = globalThis.atob(text);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/** A message's identity for dropping repeats: its id and creation time. */
function defaultMessageKey(message) {
  if (!message || typeof message !== "object" || message.id === undefined || message.id === null) return undefined;
  return `${typeof message.id}:${message.id}|${message.created_at ?? ""}`;
}

/**
 * The default cursor of a frame: its message's id, or for a history the id of its last
 * message; undefined for frames that carry no message.
 */
function defaultCursor(frame) {
  const id = (message) => (message && typeof message === "object" && isCursor(message.id) ? message.id : undefined);
  if (frame.message !== undefined) return id(frame.message);
  if (frame.type === "history" && Array.isArray(frame.messages) && frame.messages.length) return id(frame.messages[frame.messages.length - 1]);
  return undefined;
}

function isCursor(value) {
  return (typeof value === "string" && value !== "") || (typeof value === "number" && Number.isFinite(value));
}

const subKey = (type, bookingId) => `${type}:${bookingId}`;

const defaultClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle),
};

function byteLength(text) {
  return new TextEncoder().encode(text).length;
}

function report(err) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(err);
  else console.error(err); // eslint-disable-line no-console
}

/** One underlying WebSocket and what the client knows about it. */
class Link {
  constructor(ws, serial, token, purpose) {
    this.ws = ws;
    this.serial = serial;
    this.token = token;
    /** "connect" | "reconnect" | "switch" */
    this.purpose = purpose;
    this.opened = false;
    this.openedAt = 0;
    /** Set once the client has stopped caring about this socket (closed, replaced, dead). */
    this.done = false;
    /** No longer sent on: being drained after a switch-over. */
    this.retired = false;
    /** The proxy no longer knows this connection (`unknown_connection`): nothing more is sent on it. */
    this.stale = false;
    /** HTTP status of a refused handshake, when the WebSocket implementation reports it. */
    this.status = undefined;
    this.lastSentAt = 0;
    this.pingsOutstanding = 0;
    this.timers = new Set();
    /** A history arriving in parts: { frame, messages, next, parts }. */
    this.history = null;
    /** Frame texts seen on this socket while two sockets overlap (switch-over). */
    this.overlapCounts = null;
  }
}

/**
 * A chat connection through ws-proxy that stays up. See docs/protocol.md, "The client module".
 */
export class ChatSocket {
  /** @param {import("./index.js").ChatSocketOptions} options */
  constructor(options) {
    if (!options || typeof options !== "object") throw new TypeError("ChatSocket needs an options object");
    const o = { ...DEFAULTS, ...options };
    if (typeof o.url !== "string" || !/^wss?:\/\//i.test(o.url)) {
      throw new TypeError("url must be a ws:// or wss:// URL (the stage URL)");
    }
    if (!TYPES.includes(o.type)) throw new TypeError(`type must be one of ${TYPES.join(", ")}`);
    if (o.type === "booking" || (o.type === "chat" && o.bookingId !== undefined && o.bookingId !== null)) {
      // A chat socket without a bookingId is the user's own socket (subscribe() to bookings).
      if (typeof o.bookingId !== "string" || !BOOKING_ID.test(o.bookingId)) {
        throw new TypeError("bookingId must be 1-64 characters of letters, digits, '_' or '-'");
      }
    }
    if (o.token === undefined || o.token === null) {
      if (o.type !== "feed") throw new TypeError(`a token (string or async function) is required for type ${o.type}`);
    } else if (typeof o.token !== "string" && typeof o.token !== "function") {
      throw new TypeError("token must be a string or a function returning one");
    }
    if (o.transport !== "query" && o.transport !== "bearer") throw new TypeError('transport must be "query" or "bearer"');
    const WS = o.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== "function") {
      throw new TypeError("no WebSocket here: pass the constructor as the WebSocket option (e.g. from the ws package)");
    }
    for (const name of Object.keys(DEFAULTS)) {
      if (typeof DEFAULTS[name] === "number" && !(typeof o[name] === "number" && o[name] >= 0)) {
        throw new TypeError(`${name} must be a non-negative number`);
      }
    }
    if (typeof o.proactiveRefresh !== "boolean") throw new TypeError("proactiveRefresh must be true or false");
    for (const name of ["messageKey", "random", "cursor"]) {
      if (o[name] !== undefined && o[name] !== null && typeof o[name] !== "function") throw new TypeError(`${name} must be a function`);
    }
    if (o.clock !== undefined && o.clock !== null) {
      const c = o.clock;
      if (typeof c !== "object" || !["now", "setTimeout", "clearTimeout"].every((m) => typeof c[m] === "function")) {
        throw new TypeError("clock must have now(), setTimeout() and clearTimeout()");
      }
    }
    this._o = o;
    this._WS = WS;
    this._clock = o.clock ?? defaultClock;
    this._random = o.random ?? Math.random;
    this._messageKey = o.messageKey ?? defaultMessageKey;
    this._cursorOf = o.cursor ?? defaultCursor;
    /** The socket's own booking channel (a per-booking socket), as a subscription key; else null. */
    this._ownKey = NEEDS_BOOKING.has(o.type) && typeof o.bookingId === "string" ? subKey(o.type, o.bookingId) : null;
    /** @type {Map<string, Subscription>} live subscriptions by key ("type:bookingId") */
    this._subs = new Map();
    /** @type {Map<string, {sub: Subscription, promise: Promise<Subscription>}>} first subscribes under way */
    this._subscribing = new Map();
    /** The cursor of the last frame received, per key (live subscriptions and the own booking). */
    this._cursors = new Map();
    this._listeners = { message: new Set(), state: new Set(), error: new Set() };
    /** @type {SocketState} */
    this._state = "closed";
    this._stateDetail = {};
    this._started = false;
    this._ended = false;
    /** @type {Link | null} the socket frames are sent on */
    this._link = null;
    /** @type {Link | null} a socket being opened (first connect, reconnect or switch-over) */
    this._next = null;
    /** @type {Link | null} the previous socket, draining after a switch-over */
    this._draining = null;
    this._serial = 0;
    /** @type {{text: string, request?: object}[]} */
    this._queue = [];
    this._pending = new Map();
    this._attempt = 0;
    this._failures = 0;
    this._timers = new Map();
    /** Deadlines of token provider calls under way. */
    this._tokenTimers = new Set();
    this._seen = new Map();
    /** The bookings (dedupe scopes) a history has been emitted for: a later one is `resumed`. */
    this._historyEmitted = new Set();
    this._connectWaiters = [];
    /** A token already fetched for the next attempt (after a refused handshake). */
    this._nextToken = undefined;
    this._refreshing = null;
    this._lastRefreshAt = -Infinity;
    this._useAuth = true;
    /** Resolved with true when a switch-over socket opens, false when it fails. */
    this._switchWaiters = [];
    this._requestPrefix = `c${Math.floor(this._random() * 0x100000000).toString(36)}`;
    this._requestSeq = 0;
  }

  // -- public surface ---------------------------------------------------------------

  /** @returns {SocketState} */
  get state() {
    return this._state;
  }

  /** Frames waiting for a connection. */
  get queued() {
    return this._queue.length;
  }

  /**
   * Listen to "message" (every frame from the proxy, history parts re-joined), "state"
   * (state, detail) or "error" (error frames without a pending request, and the client's own
   * errors as error-shaped frames with `source: "client"`). Returns a function that unsubscribes.
   */
  on(event, listener) {
    const set = this._listeners[event];
    if (!set) throw new TypeError(`unknown event ${event}: use "message", "state" or "error"`);
    if (typeof listener !== "function") throw new TypeError("listener must be a function");
    set.add(listener);
    return () => set.delete(listener);
  }

  off(event, listener) {
    this._listeners[event]?.delete(listener);
  }

  /**
   * Open the connection. Resolves when it is open; rejects when it cannot be (a refused
   * handshake that a new token does not fix, close() before it opened, maxAttempts used up).
   * Network failures are retried with backoff meanwhile.
   * @returns {Promise<void>}
   */
  connect() {
    if (this._ended) return Promise.reject(new ChatSocketError("closed", "this socket was closed; create a new one"));
    if (this._state === "open") return Promise.resolve();
    const promise = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (!this._started) {
      this._started = true;
      this._setState("connecting", {});
      this._openLink("connect");
    }
    return promise;
  }

  /**
   * Send a frame (a JSON object). Sent at once when open, else queued and sent in order
   * after the next open. Throws a ChatSocketError: "closed" after close(), "queue_full",
   * "too_large" (over 128 KB), "invalid_frame".
   */
  send(frame) {
    this._write(this._serialize(frame), undefined);
  }

  /**
   * Send a frame with an `id` (added when missing) and wait for the frame carrying
   * `ref: id`. Rejects with a ChatSocketError: the proxy's error frame (code and `frame`),
   * "timeout", "connection_lost" (the socket it was sent on closed before the answer), "closed".
   * An `unauthorized` answer refreshes the token and sends the frame once more; an
   * `unknown_connection` answer switches over to a new connection and sends it once more there.
   * @returns {Promise<object>}
   */
  request(frame, options = {}) {
    let request;
    try {
      request = this._makeRequest(frame, options);
    } catch (err) {
      return Promise.reject(err);
    }
    this._writeRequest(request);
    return request.promise;
  }

  /**
   * Join a booking's channel on this socket (one socket per user): sends
   * `{"type": "subscribe", "booking_id", "connection_type"?, "since"?, "id"}` and resolves
   * with the subscription once the proxy answers `subscribed`. Rejects with a ChatSocketError:
   * the proxy's error frame (`unauthorized`, `forbidden`, `backend_error`,
   * `too_many_subscriptions`, ...), `timeout`, `connection_lost`, `closed`; nothing is kept
   * then. A booking already subscribed (or being subscribed) resolves with the same
   * subscription, without a second frame. After every new connection the client subscribes
   * again, with `since` = the cursor of the last frame received for the booking.
   * @returns {Promise<Subscription>}
   */
  subscribe(options) {
    let spec;
    try {
      spec = this._subscribeSpec(options);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this._ended) return Promise.reject(new ChatSocketError("closed", "this socket was closed"));
    const key = subKey(spec.connectionType, spec.bookingId);
    const live = this._subs.get(key);
    if (live) {
      live._listen(spec);
      return Promise.resolve(live);
    }
    const under = this._subscribing.get(key);
    if (under) {
      under.sub._listen(spec);
      return under.promise;
    }
    const sub = new Subscription(this, spec.bookingId, spec.connectionType);
    let request;
    try {
      request = this._makeRequest(this._subscribeFrame(sub, spec.since), {
        timeoutMs: spec.timeoutMs,
        onSettle: (error, frame) => this._subscribed(sub, request, error, frame, spec.since),
      });
    } catch (err) {
      return Promise.reject(err);
    }
    sub._listen(spec);
    sub._request = request;
    const promise = request.promise.then(() => sub);
    this._subscribing.set(key, { sub, promise });
    this._writeRequest(request);
    return promise;
  }

  /** The live subscriptions (subscribed, or being subscribed again after a new connection). */
  get subscriptions() {
    return [...this._subs.values()];
  }

  /**
   * Fetch a token and hand it to the proxy (`auth`). Resolves true when the proxy accepted a
   * new token, false when there was nothing to do or it was refused (the "error" event says why).
   * The client calls this itself ahead of a JWT's expiry and after an `unauthorized` answer.
   */
  refreshToken() {
    if (this._refreshing) return this._refreshing;
    this._refreshing = this._refresh().finally(() => {
      this._refreshing = null;
    });
    return this._refreshing;
  }

  /** Close for good: no reconnect; pending requests and queued frames are rejected/dropped. */
  close(code = 1000, reason = "") {
    if (this._ended) return;
    this._end(new ChatSocketError("closed", "closed by the caller"), { code, reason, quiet: true });
  }

  // -- emitting -------------------------------------------------------------------------

  _emit(event, ...args) {
    for (const listener of [...this._listeners[event]]) {
      try {
        listener(...args);
      } catch (err) {
        report(err);
      }
    }
  }

  _setState(state, detail) {
    this._state = state;
    this._stateDetail = detail;
    this._emit("state", state, detail);
  }

  _clientError(error) {
    this._emit("error", error.toFrame());
  }

  // -- timers ------------------------------------------------------------------------------

  _after(name, ms, fn) {
    this._cancel(name);
    const handle = this._clock.setTimeout(() => {
      this._timers.delete(name);
      fn();
    }, ms);
    this._timers.set(name, handle);
  }

  _cancel(name) {
    if (this._timers.has(name)) {
      this._clock.clearTimeout(this._timers.get(name));
      this._timers.delete(name);
    }
  }

  _linkAfter(link, ms, fn) {
    const handle = this._clock.setTimeout(() => {
      link.timers.delete(handle);
      if (!link.done) fn();
    }, ms);
    link.timers.add(handle);
    return handle;
  }

  _linkCancel(link, handle) {
    if (handle !== undefined && link.timers.delete(handle)) this._clock.clearTimeout(handle);
  }

  // -- opening sockets --------------------------------------------------------------------------

  async _openLink(purpose) {
    const serial = ++this._serial;
    const o = this._o;
    let token;
    if (this._nextToken !== undefined) {
      token = this._nextToken;
      this._nextToken = undefined;
    } else if (o.token !== undefined && o.token !== null) {
      try {
        token = await this._fetchToken();
      } catch (err) {
        if (this._ended || serial !== this._serial) return;
        this._clientError(new ChatSocketError("token_unavailable", `the token provider failed: ${err?.message ?? err}`, { retryable: true, cause: err }));
        this._attemptFailed({ purpose, status: undefined, token: undefined }, "no token");
        return;
      }
      if (this._ended || serial !== this._serial) return;
    }
    const url = new URL(o.url);
    url.searchParams.set("type", o.type);
    if (this._ownKey) {
      url.searchParams.set("booking_id", o.bookingId);
      // Back after a drop or a switch-over: the backend answers with what was missed since.
      const since = this._cursors.get(this._ownKey);
      if (since !== undefined) url.searchParams.set("since", String(since));
    }
    if (token && o.transport === "query") url.searchParams.set("token", token);
    let ws;
    try {
      ws = token && o.transport === "bearer" ? new this._WS(url.toString(), ["bearer", token]) : new this._WS(url.toString());
    } catch (err) {
      this._end(new ChatSocketError("invalid_url", `cannot open ${o.url}: ${err?.message ?? err}`, { cause: err }));
      return;
    }
    const link = new Link(ws, serial, token, purpose);
    if (this._next && !this._next.done) this._discard(this._next);
    this._next = link;
    this._watch(link);
    this._linkAfter(link, o.connectTimeoutMs, () => {
      if (link.opened) return;
      this._discard(link);
      this._linkClosed(link, { code: 4008, reason: "handshake timeout" });
    });
  }

  /** The token: the string, or what the provider returns within connectTimeoutMs. */
  async _fetchToken() {
    const source = this._o.token;
    const token = typeof source === "function" ? await this._within(this._o.connectTimeoutMs, source) : source;
    if (typeof token !== "string" || !token) throw new Error("the token provider must return a non-empty string");
    return token;
  }

  _within(ms, provider) {
    return new Promise((resolve, reject) => {
      const timer = this._clock.setTimeout(() => {
        this._tokenTimers.delete(timer);
        reject(new Error(`the token provider did not answer within ${ms} ms (connectTimeoutMs)`));
      }, ms);
      this._tokenTimers.add(timer);
      const done = () => {
        this._clock.clearTimeout(timer);
        this._tokenTimers.delete(timer);
      };
      let result;
      try {
        result = provider();
      } catch (err) {
        done();
        reject(err);
        return;
      }
      Promise.resolve(result).then(
        (value) => {
          done();
          resolve(value);
        },
        (err) => {
          done();
          reject(err);
        },
      );
    });
  }

  _watch(link) {
    const ws = link.ws;
    if (typeof ws.on === "function") {
      // The ws package reports a refused handshake's HTTP status; browsers never do.
      try {
        ws.on("unexpected-response", (_request, response) => {
          link.status = response?.statusCode;
          response?.resume?.();
          if (typeof ws.terminate === "function") ws.terminate();
          else ws.close();
        });
      } catch {
        /* not the ws package's emitter: the status stays unknown */
      }
    }
    ws.addEventListener("open", () => {
      if (link.done) return;
      this._linkOpened(link);
    });
    ws.addEventListener("message", (event) => {
      if (link.done && link !== this._draining) return;
      this._received(link, event.data);
    });
    ws.addEventListener("error", (event) => {
      // Node's ws says "Unexpected server response: 401" when nobody heard unexpected-response.
      const match = /Unexpected server response: (\d{3})/.exec(String(event?.message ?? event?.error?.message ?? ""));
      if (match && link.status === undefined) link.status = Number(match[1]);
    });
    ws.addEventListener("close", (event) => {
      this._linkClosed(link, { code: event?.code, reason: event?.reason });
    });
  }

  _linkOpened(link) {
    const o = this._o;
    link.opened = true;
    link.openedAt = this._clock.now();
    link.lastSentAt = link.openedAt;
    this._failures = 0;
    if (this._next === link) this._next = null;
    const previous = this._link;
    if (this._draining && this._draining !== previous) {
      this._discard(this._draining);
      this._endOverlap(this._draining);
    }
    this._link = link;
    // Queued first (ahead of the caller's frames), and before the old socket is retired: it
    // stays until these are answered.
    this._resubscribeAll();
    if (previous && !previous.done) this._retire(previous);
    this._linkAfter(link, o.stableAfterMs, () => {
      this._attempt = 0;
    });
    this._linkAfter(link, Math.max(0, o.maxLifetimeMs - o.switchOverBeforeMs), () => this._switchOver("lifetime"));
    this._scheduleKeepalive(link);
    this._scheduleRefresh(link);
    if (this._state !== "open") this._setState("open", { purpose: link.purpose });
    if (link.purpose === "switch") for (const resolve of this._switchWaiters.splice(0)) resolve(true);
    this._flush();
    for (const waiter of this._connectWaiters.splice(0)) waiter.resolve();
  }

  /** Open the next socket while this one still works; the switch happens when it opens. */
  _switchOver(why, token) {
    if (this._ended || !this._link || this._link.done || (this._next && !this._next.done)) return;
    if (token !== undefined) this._nextToken = token;
    this._switchReason = why;
    this._openLink("switch");
  }

  /**
   * The proxy answered `unknown_connection` on the socket frames are sent on: it has no record
   * of this connection (expired, removed, or opened before an upgrade), so nothing sent on it
   * can succeed. Stop sending on it (frames queue) and switch over to a new connection; the
   * old one still delivers answers to what was already sent on it. At once when the socket had
   * been stable, else after a backoff delay (a proxy that forgets every new connection is not
   * asked for one connection after another).
   */
  _recover(link) {
    if (this._ended || link !== this._link || link.done || link.stale) return;
    link.stale = true;
    const reason = "the proxy no longer knows this connection (unknown_connection)";
    if (this._next && !this._next.done) {
      this._setState("reconnecting", { attempt: this._attempt, delayMs: 0, retryAt: this._clock.now(), reason, phase: "connecting" });
      return; // a new socket is already on its way
    }
    const stable = this._clock.now() - link.openedAt >= this._o.stableAfterMs;
    if (stable) {
      this._setState("reconnecting", { attempt: this._attempt, delayMs: 0, retryAt: this._clock.now(), reason, phase: "connecting" });
      this._switchOver("unknown_connection");
      return;
    }
    this._retrySwitch(reason);
  }

  /** A switch-over that failed (or a recovery that must wait): try again after a backoff delay. */
  _retrySwitch(reason) {
    const delayMs = this._backoff();
    const link = this._link;
    if (link?.stale) {
      this._setState("reconnecting", { attempt: this._attempt, delayMs, retryAt: this._clock.now() + delayMs, reason, phase: "waiting" });
    }
    this._after("switch", delayMs, () => {
      if (this._ended || this._link !== link || !link || link.done) return;
      if (link.stale) this._setState("reconnecting", { attempt: this._attempt, delayMs: 0, retryAt: this._clock.now(), reason, phase: "connecting" });
      this._switchOver("retry");
    });
  }

  /** After a switch-over: stop sending on the old socket, close it once its requests are answered. */
  _retire(old) {
    old.retired = true;
    for (const handle of old.timers) this._clock.clearTimeout(handle);
    old.timers.clear();
    this._draining = old;
    old.overlapCounts = new Map();
    this._link.overlapCounts = new Map();
    const closeOld = () => {
      if (old.done) return;
      this._discard(old, 1000, "switched to a new connection");
      // Frames already on their way still arrive until the close completes (and count
      // against the overlap); a close that never completes ends the overlap here.
      this._after("overlap", this._o.switchOverDrainMs + 10000, () => this._endOverlap(old));
    };
    this._linkAfter(old, this._o.switchOverDrainMs, closeOld);
    old.closeWhenDrained = closeOld;
    this._maybeCloseDrained(old);
  }

  _maybeCloseDrained(old) {
    if (!old.retired || old.done) return;
    // Its own requests, and the subscribes on the new socket (until they are answered, the
    // old socket still delivers those bookings' frames; switchOverDrainMs bounds the wait).
    for (const request of this._pending.values()) if (request.link === old || request.holdsDrain) return;
    old.closeWhenDrained();
  }

  _endOverlap(old) {
    if (this._draining !== old) return;
    this._cancel("overlap");
    this._draining = null;
    old.overlapCounts = null;
    if (this._link) this._link.overlapCounts = null;
  }

  /** Stop caring about a socket and close it (terminate where the implementation can). */
  _discard(link, code = 1000, reason = "") {
    if (link.done) return;
    link.done = true;
    for (const handle of link.timers) this._clock.clearTimeout(handle);
    link.timers.clear();
    try {
      if (!link.opened && typeof link.ws.terminate === "function") link.ws.terminate();
      else link.ws.close(code, reason);
    } catch {
      /* already closing */
    }
    this._failPendingOn(link);
  }

  _failPendingOn(link) {
    for (const request of [...this._pending.values()]) {
      if (request.link === link) {
        this._settle(request, new ChatSocketError("connection_lost", `the connection closed before request ${request.id} was answered; it may or may not have been processed`, { retryable: true }));
      }
    }
  }

  _linkClosed(link, { code, reason }) {
    const wasDone = link.done;
    link.done = true;
    for (const handle of link.timers) this._clock.clearTimeout(handle);
    link.timers.clear();
    link.history = null;
    this._failPendingOn(link);
    if (this._draining === link) this._endOverlap(link);
    if (this._ended) return;
    if (link === this._link) {
      this._link = null;
      if (this._next && !this._next.done) {
        // A switch-over socket is already on its way: it becomes the reconnect.
        this._setState("reconnecting", { attempt: this._attempt, delayMs: 0, retryAt: this._clock.now(), reason: closeText(code, reason), phase: "connecting" });
        return;
      }
      this._scheduleReconnect(closeText(code, reason));
      return;
    }
    if (link.opened || link.retired) return; // an old socket after a switch-over
    if (this._next === link) this._next = null;
    if (wasDone && link.status === undefined && code !== 4008) return; // discarded on purpose
    this._attemptFailed(link, closeText(code, reason));
  }

  /**
   * A socket that never opened: refused (status known: the ws package), or unknown (a network
   * failure, or any failure in a browser, which hides the handshake's status).
   */
  async _attemptFailed({ purpose, status, token }, why = "") {
    if (this._ended) return;
    this._failures += 1;
    if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) {
      await this._refused(purpose, status, token);
      return;
    }
    const exp = status === undefined && token ? jwtExpiry(token) : undefined;
    if (exp !== undefined && exp <= this._clock.now()) {
      // Status unknown, and the token was past its exp by this clock: most likely refused
      // for it. Go on only with a different token.
      await this._refused(purpose, 401, token, "token_expired");
      return;
    }
    if (this._failures >= this._o.maxAttempts) {
      this._end(new ChatSocketError("connect_failed", `could not connect after ${this._failures} attempts${why ? ` (${why})` : ""}`, { status, retryable: true }));
      return;
    }
    if (purpose === "switch") for (const resolve of this._switchWaiters.splice(0)) resolve(false);
    if (purpose === "switch" && this._link && !this._link.done) {
      // The old socket is still there: try the switch again later.
      this._retrySwitch(status ? `the handshake failed (${status})` : why || "the connection failed");
      return;
    }
    this._scheduleReconnect(status ? `the handshake failed (${status})` : why || "the connection failed");
  }

  /** 400/401/403 and other 4xx: retried only when the token provider yields a new token. */
  async _refused(purpose, status, used, code = "refused") {
    const tokenCanHelp = (status === 401 || status === 403) && typeof this._o.token === "function";
    const refused = () =>
      code === "token_expired"
        ? new ChatSocketError(code, "the connection failed and the token provider has no token that is not expired")
        : new ChatSocketError(code, `the proxy refused the connection (HTTP ${status})`, { status });
    if (!tokenCanHelp) {
      this._end(refused());
      return;
    }
    let token;
    try {
      token = await this._fetchToken();
    } catch (err) {
      this._end(refused());
      return;
    }
    if (this._ended) return;
    const exp = jwtExpiry(token);
    if (token === used || (code === "token_expired" && exp !== undefined && exp <= this._clock.now())) {
      this._end(refused());
      return;
    }
    this._nextToken = token;
    if (purpose === "switch") for (const resolve of this._switchWaiters.splice(0)) resolve(false);
    if (purpose === "switch" && this._link && !this._link.done) {
      this._retrySwitch(`the handshake was refused (${status}); retrying with a new token`);
      return;
    }
    this._scheduleReconnect(`the handshake was refused (${status}); retrying with a new token`);
  }

  _backoff() {
    const o = this._o;
    const ceiling = Math.min(o.reconnectMaxDelayMs, o.reconnectBaseDelayMs * 2 ** Math.min(this._attempt, 30));
    this._attempt += 1;
    return Math.floor(this._random() * ceiling);
  }

  _scheduleReconnect(reason) {
    if (this._ended) return;
    const delayMs = this._backoff();
    const retryAt = this._clock.now() + delayMs;
    this._setState(this._connectWaiters.length && this._state === "connecting" ? "connecting" : "reconnecting", {
      attempt: this._attempt,
      delayMs,
      retryAt,
      reason,
      phase: "waiting",
    });
    this._after("reconnect", delayMs, () => {
      if (this._ended) return;
      this._setState(this._state, { attempt: this._attempt, delayMs: 0, retryAt: this._clock.now(), reason, phase: "connecting" });
      this._openLink("reconnect");
    });
  }

  _end(error, { code = 1000, reason = "", quiet = false } = {}) {
    if (this._ended) return;
    this._ended = true;
    for (const name of [...this._timers.keys()]) this._cancel(name);
    for (const timer of this._tokenTimers) this._clock.clearTimeout(timer);
    this._tokenTimers.clear();
    // Subscriptions end with the socket (before their requests are settled: not "failed").
    for (const sub of this._subs.values()) sub._state = "closed";
    this._subs.clear();
    this._subscribing.clear();
    this._cursors.clear();
    for (const request of [...this._pending.values()]) this._settle(request, error);
    for (const link of [this._link, this._next, this._draining]) if (link) this._discard(link, code, reason);
    this._link = this._next = this._draining = null;
    this._queue = [];
    for (const waiter of this._connectWaiters.splice(0)) waiter.reject(error);
    for (const resolve of this._switchWaiters.splice(0)) resolve(false);
    if (!quiet) this._clientError(error);
    this._setState("closed", { reason: error.message, code: error.code, status: error.status });
  }

  // -- sending ----------------------------------------------------------------------------

  _serialize(frame) {
    if (!frame || typeof frame !== "object" || Array.isArray(frame)) {
      throw new ChatSocketError("invalid_frame", "a frame is a JSON object");
    }
    let text;
    try {
      text = JSON.stringify(frame);
    } catch (err) {
      throw new ChatSocketError("invalid_frame", `the frame cannot be serialized: ${err?.message ?? err}`, { cause: err });
    }
    if (text.length > MAX_FRAME_BYTES / 4 && byteLength(text) > MAX_FRAME_BYTES) {
      throw new ChatSocketError("too_large", `the frame is over ${MAX_FRAME_BYTES / 1024} KB`);
    }
    return text;
  }

  _write(text, request) {
    if (this._ended) throw new ChatSocketError("closed", "this socket was closed");
    const link = this._link;
    if (link && !link.done && !link.retired && !link.stale && link.ws.readyState === OPEN && this._queue.length === 0) {
      this._sendOn(link, text, request);
      return;
    }
    if (this._queue.length >= this._o.queueLimit) {
      throw new ChatSocketError("queue_full", `${this._queue.length} frames are already waiting for the connection (queueLimit)`, { retryable: true });
    }
    this._queue.push({ text, request });
  }

  _sendOn(link, text, request) {
    link.ws.send(text);
    link.lastSentAt = this._clock.now();
    if (request) request.link = link;
  }

  _flush() {
    const link = this._link;
    while (this._queue.length && link && !link.done && !link.stale && link.ws.readyState === OPEN) {
      const entry = this._queue[0];
      if (entry.request && !this._pending.has(entry.request.id)) {
        this._queue.shift(); // timed out while queued: never sent
        continue;
      }
      try {
        this._sendOn(link, entry.text, entry.request);
      } catch {
        return; // the socket is going away; the frame stays first in the queue
      }
      this._queue.shift();
    }
  }

  _settle(request, error, frame) {
    if (this._pending.get(request.id) !== request) return;
    this._pending.delete(request.id);
    this._clock.clearTimeout(request.timer);
    const index = this._queue.findIndex((entry) => entry.request === request);
    if (index >= 0) this._queue.splice(index, 1);
    if (request.onSettle) {
      // At once, not in a later microtask: a subscription is live before the frames that follow its answer.
      try {
        error = request.onSettle(error, frame) ?? error;
      } catch (err) {
        report(err);
      }
    }
    if (error) request.reject(error);
    else request.resolve(frame);
    const link = request.link;
    if (link && link.retired) this._maybeCloseDrained(link);
    if (request.holdsDrain && this._draining) this._maybeCloseDrained(this._draining);
  }

  // -- keepalive and token refresh --------------------------------------------------------------

  _scheduleKeepalive(link) {
    const o = this._o;
    const due = link.lastSentAt + o.pingIntervalMs - this._clock.now();
    link.keepalive = this._linkAfter(link, Math.max(0, due), () => {
      if (link.retired || this._link !== link) return;
      if (this._clock.now() - link.lastSentAt >= o.pingIntervalMs && link.ws.readyState === OPEN) {
        try {
          this._sendOn(link, '{"type":"ping"}');
        } catch {
          return;
        }
        link.pingsOutstanding += 1;
        if (link.pongDeadline === undefined) {
          link.pongDeadline = this._linkAfter(link, o.pongTimeoutMs, () => {
            link.pongDeadline = undefined;
            if (this._link !== link) return;
            this._discard(link, 4000, "keepalive timeout");
            this._linkClosed(link, { code: 4000, reason: "no answer to a keepalive ping" });
          });
        }
      }
      this._scheduleKeepalive(link);
    });
  }

  _scheduleRefresh(link) {
    this._cancel("refresh");
    if (!this._canRefresh() || !link.token || !this._o.proactiveRefresh) return;
    const exp = jwtExpiry(link.token);
    if (exp === undefined) return;
    const now = this._clock.now();
    const at = Math.max(exp - this._o.refreshBeforeExpiryMs, this._lastRefreshAt + this._o.minRefreshIntervalMs, now);
    this._after("refresh", at - now, () => {
      if (this._link === link) this.refreshToken();
    });
  }

  _canRefresh() {
    return this._o.type !== "feed" && typeof this._o.token === "function" && !this._ended;
  }

  async _refresh() {
    const link = this._link;
    if (!this._canRefresh() || !link || link.done) return false;
    this._lastRefreshAt = this._clock.now();
    let token;
    try {
      token = await this._fetchToken();
    } catch (err) {
      this._clientError(new ChatSocketError("token_unavailable", `the token provider failed: ${err?.message ?? err}`, { retryable: true, cause: err }));
      this._scheduleRefresh(link);
      return false;
    }
    if (this._ended || this._link !== link || link.done) return false;
    if (token === link.token) return false;
    if (!this._useAuth) return this._refreshBySwitch(token);
    try {
      const answer = await this.request({ type: "auth", token }, { internal: true });
      if (answer.type !== "authenticated") throw new ChatSocketError("backend_error", `unexpected answer to auth: ${answer.type}`);
      link.token = token;
      this._scheduleRefresh(link);
      return true;
    } catch (err) {
      const code = err?.code;
      if (code === "unknown_connection") {
        // The proxy lost this connection: a new connection, opened with the new token.
        return this._refreshBySwitch(token);
      }
      if (code === "invalid_message" || code === "backend_error") {
        // A proxy that does not know `auth`: a new connection carries the new token instead.
        this._useAuth = false;
        return this._refreshBySwitch(token);
      }
      if (err instanceof ChatSocketError && code !== "closed") this._emit("error", err.toFrame());
      return false;
    }
  }

  _refreshBySwitch(token) {
    if (!this._link || this._link.done) return Promise.resolve(false);
    const opened = new Promise((resolve) => this._switchWaiters.push(resolve));
    if (this._next && !this._next.done) {
      this._nextToken = undefined;
      return opened; // a switch is already under way with a token fetched just before
    }
    this._switchOver("token", token);
    return opened;
  }

  // -- requests ---------------------------------------------------------------------------------

  /** A pending request (its timer running), not yet written; throws ChatSocketError for a bad frame. */
  _makeRequest(frame, options = {}) {
    if (!frame || typeof frame !== "object" || Array.isArray(frame)) {
      throw new ChatSocketError("invalid_frame", "a frame is a JSON object");
    }
    const timeoutMs = options.timeoutMs ?? this._o.requestTimeoutMs;
    let id = frame.id;
    if (id === undefined || id === null) {
      id = `${this._requestPrefix}-${++this._requestSeq}`;
      frame = { ...frame, id };
    } else if (!(typeof id === "string" || (typeof id === "number" && Number.isFinite(id)))) {
      throw new ChatSocketError("invalid_frame", "a request id is a string or a number");
    } else if (this._pending.has(id)) {
      throw new ChatSocketError("invalid_frame", `a request with id ${id} is already pending`);
    }
    const text = this._serialize(frame);
    const request = {
      id,
      text,
      link: null,
      retried: false,
      resent: false,
      internal: !!options.internal,
      onSettle: options.onSettle,
      holdsDrain: false,
      timer: null,
    };
    request.promise = new Promise((resolve, reject) => {
      request.resolve = resolve;
      request.reject = reject;
    });
    request.timer = this._clock.setTimeout(() => {
      this._settle(request, new ChatSocketError("timeout", `no answer to request ${id} within ${timeoutMs} ms`, { retryable: true }));
    }, timeoutMs);
    this._pending.set(id, request);
    return request;
  }

  _writeRequest(request) {
    try {
      this._write(request.text, request);
    } catch (err) {
      this._settle(request, err);
    }
  }

  // -- subscriptions ------------------------------------------------------------------------------

  _subscribeSpec(options) {
    if (!options || typeof options !== "object") throw new TypeError("subscribe() needs an options object with a bookingId");
    const { bookingId, connectionType = "chat", since, timeoutMs, onMessage, onError } = options;
    if (typeof bookingId !== "string" || !BOOKING_ID.test(bookingId)) {
      throw new TypeError("bookingId must be 1-64 characters of letters, digits, '_' or '-'");
    }
    if (!BOOKING_TYPES.includes(connectionType)) throw new TypeError(`connectionType must be one of ${BOOKING_TYPES.join(", ")}`);
    if (since !== undefined && since !== null && !isCursor(since)) throw new TypeError("since must be a non-empty string or a finite number");
    if (timeoutMs !== undefined && !(typeof timeoutMs === "number" && timeoutMs >= 0)) throw new TypeError("timeoutMs must be a non-negative number");
    for (const [name, fn] of [["onMessage", onMessage], ["onError", onError]]) {
      if (fn !== undefined && fn !== null && typeof fn !== "function") throw new TypeError(`${name} must be a function`);
    }
    if (this._o.type === "feed") throw new TypeError("a feed connection has no user: it cannot subscribe");
    return { bookingId, connectionType, since: since ?? undefined, timeoutMs, onMessage, onError };
  }

  /** `connection_type` is left out for chat, the proxy's default. */
  _subscribeFrame(sub, since) {
    const frame = { type: "subscribe", booking_id: sub.bookingId };
    if (sub.connectionType !== "chat") frame.connection_type = sub.connectionType;
    if (since !== undefined) frame.since = since;
    return frame;
  }

  /** The answer to a first subscribe: live on `subscribed`; on anything else nothing is kept. */
  _subscribed(sub, request, error, frame, since) {
    if (this._subscribing.get(sub._key)?.sub === sub) this._subscribing.delete(sub._key);
    if (sub._request === request) sub._request = null;
    if (!error && frame?.type !== "subscribed") {
      error = new ChatSocketError("backend_error", `unexpected answer to subscribe: ${frame?.type}`);
    }
    const early = sub._earlyCursor;
    sub._earlyCursor = undefined;
    if (error) {
      sub._state = "failed";
      return error;
    }
    sub._state = "subscribed";
    this._subs.set(sub._key, sub);
    const start = early ?? since;
    if (start !== undefined && !this._cursors.has(sub._key)) this._cursors.set(sub._key, start);
    return undefined;
  }

  /**
   * A new connection has none of the old one's subscriptions: subscribe again to every live
   * one, from its cursor, ahead of the queued frames. A subscribe already queued for a
   * subscription (resent after `unknown_connection`) goes out as it is.
   */
  _resubscribeAll() {
    const entries = [];
    for (const sub of this._subs.values()) {
      if (sub._request && this._queue.some((entry) => entry.request === sub._request)) continue;
      let request;
      try {
        request = this._makeRequest(this._subscribeFrame(sub, this._cursors.get(sub._key)), {
          onSettle: (error, frame) => this._resubscribed(sub, request, error, frame),
        });
      } catch (err) {
        this._failSub(sub, err);
        continue;
      }
      request.promise.catch(() => undefined); // settled through onSettle
      request.holdsDrain = true;
      sub._request = request;
      sub._state = "resubscribing";
      entries.push({ text: request.text, request });
    }
    this._queue.unshift(...entries);
  }

  _resubscribed(sub, request, error, frame) {
    if (sub._request === request) sub._request = null;
    if (sub._state !== "resubscribing" && sub._state !== "subscribed") return undefined; // unsubscribed or closed meanwhile
    if (!error && frame?.type === "subscribed") {
      sub._state = "subscribed";
      return undefined;
    }
    // The socket it went out on closed: the next connection subscribes again. Closed: nothing to do.
    if (error && (error.code === "connection_lost" || error.code === "closed")) return undefined;
    if (!error) error = new ChatSocketError("backend_error", `unexpected answer to subscribe: ${frame?.type}`);
    this._failSub(sub, error);
    return error;
  }

  /** A subscription that could not be restored: no longer live; an error event, once. */
  _failSub(sub, error) {
    this._dropSub(sub, "failed");
    const base = error instanceof ChatSocketError ? error.toFrame() : new ChatSocketError("invalid_frame", String(error?.message ?? error)).toFrame();
    const frame = { ...base, booking_id: sub.bookingId, connection_type: sub.connectionType };
    sub._emit("error", frame);
    this._emit("error", frame);
  }

  /** Forget a subscription: its routing, its cursor and what was emitted for its booking. */
  _dropSub(sub, state) {
    sub._state = state;
    if (this._subs.get(sub._key) !== sub) return;
    this._subs.delete(sub._key);
    if (sub._key !== this._ownKey) this._cursors.delete(sub._key);
    const stillUsed = [...this._subs.values()].some((other) => other.bookingId === sub.bookingId) || (this._ownKey && this._o.bookingId === sub.bookingId);
    if (stillUsed) return;
    // Subscribed again later, the booking's history comes whole again.
    this._historyEmitted.delete(sub.bookingId);
    const prefix = `${sub.bookingId}\u0000`;
    for (const key of [...this._seen.keys()]) if (key.startsWith(prefix)) this._seen.delete(key);
  }

  /** The booking a frame belongs to: its `booking_id`, else (a per-booking socket) its own. */
  _bookingOf(frame) {
    const id = frame.booking_id;
    if (typeof id === "string" && id) return id;
    if (typeof id === "number" && Number.isFinite(id)) return String(id);
    return this._ownKey ? this._o.bookingId : undefined;
  }

  /** The scope of message keys and histories: the frame's booking, or "" (a socket of no booking). */
  _scope(frame) {
    return this._bookingOf(frame) ?? "";
  }

  /** The keys a frame is for: its booking, and its connection_type when it names one (else both booking types). */
  _keysOf(frame) {
    const booking = this._bookingOf(frame);
    if (booking === undefined) return [];
    const types = BOOKING_TYPES.includes(frame.connection_type) ? [frame.connection_type] : BOOKING_TYPES;
    return types.map((type) => subKey(type, booking));
  }

  _subsOf(frame) {
    const subs = [];
    for (const key of this._keysOf(frame)) {
      const sub = this._subs.get(key);
      if (sub) subs.push(sub);
    }
    return subs;
  }

  /**
   * Emit a frame, move the cursors it is for, and hand it to its subscriptions. A subscription
   * whose `subscribed` answer is still on its way gets the frame too (the proxy joins the
   * channel before it answers): its cursor is kept once the answer comes.
   */
  _deliver(frame) {
    this._emit("message", frame);
    const live = [];
    const early = [];
    for (const key of this._keysOf(frame)) {
      if (key === this._ownKey || this._subs.has(key)) live.push(key);
      else if (this._subscribing.has(key)) early.push(this._subscribing.get(key).sub);
    }
    if (!live.length && !early.length) return;
    let cursor;
    try {
      cursor = this._cursorOf(frame);
    } catch (err) {
      report(err);
    }
    const moved = isCursor(cursor);
    for (const key of live) {
      if (moved) this._cursors.set(key, cursor);
      this._subs.get(key)?._emit("message", frame);
    }
    for (const sub of early) {
      if (moved) sub._earlyCursor = cursor;
      sub._emit("message", frame);
    }
  }

  // -- receiving ----------------------------------------------------------------------------------

  _received(link, data) {
    if (typeof data !== "string") {
      this._clientError(new ChatSocketError("invalid_frame", "the proxy sent a binary frame; frames are JSON text"));
      return;
    }
    if (link.pongDeadline !== undefined) {
      this._linkCancel(link, link.pongDeadline);
      link.pongDeadline = undefined;
    }
    if (this._isOverlapRepeat(link, data)) return;
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      this._clientError(new ChatSocketError("invalid_frame", "the proxy sent a frame that is not JSON"));
      return;
    }
    if (!frame || typeof frame !== "object" || Array.isArray(frame)) {
      this._clientError(new ChatSocketError("invalid_frame", "the proxy sent a frame that is not a JSON object"));
      return;
    }
    if (frame.type === "pong" && frame.ref === undefined && link.pingsOutstanding > 0) {
      link.pingsOutstanding -= 1;
      return;
    }
    if (frame.type === "history") {
      this._historyPart(link, frame);
      return;
    }
    this._dispatch(link, frame);
  }

  /** While two sockets overlap, a frame already taken from the other socket is a repeat. */
  _isOverlapRepeat(link, text) {
    const draining = this._draining;
    if (!draining || !draining.overlapCounts || !this._link || !this._link.overlapCounts) return false;
    const other = link === draining ? this._link : link === this._link ? draining : null;
    if (!other) return false;
    const theirs = other.overlapCounts.get(text) ?? 0;
    if (theirs > 0) {
      if (theirs === 1) other.overlapCounts.delete(text);
      else other.overlapCounts.set(text, theirs - 1);
      return true;
    }
    link.overlapCounts.set(text, (link.overlapCounts.get(text) ?? 0) + 1);
    return false;
  }

  _historyPart(link, frame) {
    const parts = frame.parts;
    if (!(Number.isInteger(parts) && parts > 1 && Number.isInteger(frame.part))) {
      link.history = null;
      this._emitHistory(frame);
      return;
    }
    if (frame.part === 1 || !link.history || link.history.parts !== parts || link.history.next !== frame.part) {
      if (frame.part !== 1) {
        this._clientError(new ChatSocketError("invalid_frame", `history part ${frame.part} of ${parts} arrived out of order; dropped`));
        link.history = null;
        return;
      }
      link.history = { frame, messages: [], next: 1, parts };
    }
    const h = link.history;
    if (Array.isArray(frame.messages)) h.messages.push(...frame.messages);
    h.next += 1;
    if (frame.part < parts) return;
    link.history = null;
    const whole = { ...h.frame, messages: h.messages };
    delete whole.part;
    delete whole.parts;
    delete whole.ref;
    if (frame.ref !== undefined) whole.ref = frame.ref; // the proxy puts a ref on the last part only
    this._emitHistory(whole);
  }

  _emitHistory(frame) {
    const scope = this._scope(frame);
    if (Array.isArray(frame.messages)) {
      const fresh = [];
      for (const message of frame.messages) {
        const key = this._messageKey(message);
        if (key === undefined || !this._remember(scope, key)) fresh.push(message);
      }
      frame = { ...frame, messages: fresh };
    }
    if (this._historyEmitted.has(scope)) frame.resumed = true;
    this._historyEmitted.add(scope);
    const request = frame.ref !== undefined && frame.ref !== null ? this._pending.get(frame.ref) : undefined;
    if (request) this._settle(request, undefined, frame);
    if (request && request.internal) return;
    this._deliver(frame);
  }

  /** Remember a message key within a booking (its scope); true when it was already known. */
  _remember(scope, messageKey) {
    const key = `${scope}\u0000${messageKey}`;
    if (this._seen.has(key)) return true;
    this._seen.set(key, true);
    if (this._seen.size > this._o.dedupeLimit) this._seen.delete(this._seen.keys().next().value);
    return false;
  }

  _dispatch(link, frame) {
    const request = frame.ref !== undefined && frame.ref !== null ? this._pending.get(frame.ref) : undefined;
    if (frame.type === "error" && frame.code === "unknown_connection") {
      this._recover(link);
      if (request && !request.resent && !request.internal) {
        // Not processed by the proxy: sent once more, on the new connection.
        request.resent = true;
        request.link = null; // answered: no longer lost with its socket
        this._resend(request);
        if (link.retired) this._maybeCloseDrained(link);
        return;
      }
    }
    if (request && frame.type === "error") {
      if (frame.code === "unauthorized" && !request.retried && !request.internal && this._canRefresh()) {
        request.retried = true;
        request.link = null; // answered: no longer lost with its socket
        this._retryAfterRefresh(request, frame);
        return;
      }
      this._settle(request, new ChatSocketError(String(frame.code ?? "error"), String(frame.message ?? "error"), { frame, retryable: frame.retryable === true }));
      return;
    }
    if (request) this._settle(request, undefined, frame);
    if (frame.type === "error") {
      if (frame.code === "unauthorized" && this._canRefresh()) this.refreshToken();
      this._emit("error", frame);
      for (const sub of this._subsOf(frame)) sub._emit("error", frame);
      return;
    }
    if (request && request.internal) return; // the answer to the client's own auth
    if (frame.type === "message" && frame.message && typeof frame.message === "object") {
      const key = this._messageKey(frame.message);
      if (key !== undefined && this._remember(this._scope(frame), key)) return;
    }
    this._deliver(frame);
  }

  _resend(request) {
    try {
      this._write(request.text, request);
    } catch (err) {
      this._settle(request, err);
    }
  }

  async _retryAfterRefresh(request, frame) {
    const refused = new ChatSocketError("unauthorized", String(frame.message ?? "unauthorized"), { frame });
    const refreshed = await this.refreshToken();
    if (this._pending.get(request.id) !== request) return; // timed out or closed meanwhile
    if (!refreshed) {
      this._settle(request, refused);
      return;
    }
    this._resend(request);
  }
}

/**
 * One booking's channel on a ChatSocket, from socket.subscribe(). Its "message" event gets the
 * frames tagged with that booking; send()/request() add `booking_id` to frames sent into it.
 */
class Subscription {
  /** @param {ChatSocket} socket */
  constructor(socket, bookingId, connectionType) {
    this._socket = socket;
    this._bookingId = bookingId;
    this._connectionType = connectionType;
    this._key = subKey(connectionType, bookingId);
    /** "subscribing" | "subscribed" | "resubscribing" | "failed" | "unsubscribed" | "closed" */
    this._state = "subscribing";
    this._listeners = { message: new Set(), error: new Set() };
    /** The subscribe request under way for it, if any. */
    this._request = null;
    /** The cursor of a frame that came before the first `subscribed` answer. */
    this._earlyCursor = undefined;
    this._unsubscribing = null;
  }

  get bookingId() {
    return this._bookingId;
  }

  get connectionType() {
    return this._connectionType;
  }

  get state() {
    return this._state;
  }

  /** The cursor of the last frame received for this booking (sent as `since` when subscribing again). */
  get cursor() {
    return this._socket._subs.get(this._key) === this ? this._socket._cursors.get(this._key) : undefined;
  }

  /**
   * Listen to "message" (every frame the socket emits for this booking) or "error" (error
   * frames for this booking, and a failed resubscribe). Returns a function that unsubscribes the listener.
   */
  on(event, listener) {
    const set = this._listeners[event];
    if (!set) throw new TypeError(`unknown event ${event}: use "message" or "error"`);
    if (typeof listener !== "function") throw new TypeError("listener must be a function");
    set.add(listener);
    return () => set.delete(listener);
  }

  off(event, listener) {
    this._listeners[event]?.delete(listener);
  }

  /** Send a frame into this booking (`booking_id` added); throws like ChatSocket.send, and not_subscribed. */
  send(frame) {
    this._socket.send(this._into(frame));
  }

  /** request() into this booking (`booking_id` added). */
  request(frame, options = {}) {
    let tagged;
    try {
      tagged = this._into(frame);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._socket.request(tagged, options);
  }

  /** Who is here: resolves with the proxy's `presence` answer ({users, connections, ...}). */
  presence(options = {}) {
    if (!this._live()) return Promise.reject(this._notSubscribed());
    const frame = { type: "presence", booking_id: this._bookingId };
    if (this._connectionType !== "chat") frame.connection_type = this._connectionType;
    return this._socket.request(frame, options).then((answer) => {
      if (answer.type !== "presence") throw new ChatSocketError("backend_error", `unexpected answer to presence: ${answer.type}`);
      return answer;
    });
  }

  /**
   * Leave the booking's channel: no more events at once, not subscribed again after a new
   * connection. Resolves once the proxy answers `unsubscribed` (or the connection is gone,
   * which removes its subscriptions too); rejects with the proxy's error frame. Called again,
   * it returns the same promise.
   */
  unsubscribe(options = {}) {
    if (this._unsubscribing) return this._unsubscribing;
    const socket = this._socket;
    const inFlight = this._request?.promise;
    const wasOpen = this._state !== "closed";
    socket._dropSub(this, "unsubscribed");
    this._unsubscribing = (async () => {
      if (!wasOpen || socket._ended) return;
      // A subscribe still under way is answered first: the proxy handles frames concurrently.
      if (inFlight) await inFlight.catch(() => undefined);
      if (socket._ended) return;
      const frame = { type: "unsubscribe", booking_id: this._bookingId };
      if (this._connectionType !== "chat") frame.connection_type = this._connectionType;
      try {
        const answer = await socket.request(frame, options);
        if (answer.type !== "unsubscribed") throw new ChatSocketError("backend_error", `unexpected answer to unsubscribe: ${answer.type}`);
      } catch (err) {
        // A connection that is gone took its subscriptions with it.
        if (err?.code === "connection_lost" || err?.code === "closed") return;
        throw err;
      }
    })();
    return this._unsubscribing;
  }

  // -- internal ---------------------------------------------------------------------------------

  _live() {
    return this._state === "subscribed" || this._state === "resubscribing";
  }

  _notSubscribed() {
    return new ChatSocketError("not_subscribed", `the subscription to booking ${this._bookingId} is ${this._state}`);
  }

  _into(frame) {
    if (!frame || typeof frame !== "object" || Array.isArray(frame)) throw new ChatSocketError("invalid_frame", "a frame is a JSON object");
    if (!this._live()) throw this._notSubscribed();
    if (frame.booking_id !== undefined && frame.booking_id !== this._bookingId) {
      throw new ChatSocketError("invalid_frame", `the frame names booking ${frame.booking_id}, not this subscription's ${this._bookingId}`);
    }
    const tagged = { ...frame, booking_id: this._bookingId };
    if (this._connectionType !== this._socket._o.type && tagged.connection_type === undefined) tagged.connection_type = this._connectionType;
    return tagged;
  }

  _listen({ onMessage, onError }) {
    if (onMessage) this._listeners.message.add(onMessage);
    if (onError) this._listeners.error.add(onError);
  }

  _emit(event, ...args) {
    for (const listener of [...this._listeners[event]]) {
      try {
        listener(...args);
      } catch (err) {
        report(err);
      }
    }
  }
}

function closeText(code, reason) {
  if (code === undefined) return "the connection closed";
  return `closed (${code}${reason ? `: ${reason}` : ""})`;
}
