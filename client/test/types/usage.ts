// Compiled by `npm run typecheck` only: the declarations must accept what the docs show and
// reject what they forbid (each @ts-expect-error fails the check if the line compiles).
import {
  ChatSocket,
  ChatSocketError,
  DEFAULTS,
  MAX_FRAME_BYTES,
  jwtExpiry,
  type ChatSocketEvent,
  type ChatSocketEvents,
  type ChatSocketOptions,
  type ClientErrorCode,
  type Clock,
  type ConnectionType,
  type Defaults,
  type ErrorCode,
  type ErrorFrame,
  type Frame,
  type ProxyErrorCode,
  type RequestOptions,
  type SocketState,
  type StateDetail,
  type WebSocketConstructor,
  type BookingConnectionType,
  type Cursor,
  type PresenceFrame,
  type SubscribeOptions,
  type Subscription,
  type SubscriptionEvent,
  type SubscriptionEvents,
  type SubscriptionState,
} from "@ws-proxy/client";

export async function usage(): Promise<void> {
  const socket = new ChatSocket({
    url: "wss://abc.execute-api.eu-west-1.amazonaws.com/development",
    type: "chat",
    bookingId: "42",
    token: async () => "jwt",
    transport: "bearer",
    WebSocket,
    queueLimit: 10,
  });
  const off = socket.on("message", (frame: Frame) => void frame.type);
  socket.on("state", (state: SocketState, detail) => void [state, detail.retryAt, detail.phase]);
  socket.on("error", (frame) => void [frame.code, frame.retryable, frame.ref]);
  off();
  await socket.connect();
  socket.send({ body: "hello" });
  const reply = await socket.request<{ type: string; message: { id: number } }>({ body: "hi" }, { timeoutMs: 5000 });
  void reply.message.id;
  try {
    await socket.request({ body: "x" });
  } catch (err) {
    if (err instanceof ChatSocketError) void [err.code, err.frame?.code, err.status];
  }
  const refreshed: boolean = await socket.refreshToken();
  void refreshed;
  socket.close();
  const exp: number | undefined = jwtExpiry("a.b.c");
  void [exp, DEFAULTS.pingIntervalMs];

  // Every event typed: listeners get their parameters from the event name.
  const unsubscribe: () => void = socket.on("state", (state, detail) => {
    const s: SocketState = state;
    const d: StateDetail = detail;
    void [s, d.attempt, d.delayMs, d.retryAt, d.phase, d.reason, d.code, d.status, d.purpose];
  });
  unsubscribe();
  socket.on("error", (frame) => {
    const f: ErrorFrame = frame;
    void [f.type, f.code, f.message, f.retryable, f.ref, f.source, f.status];
  });
  const onMessage: ChatSocketEvents["message"] = (frame) => void frame.type;
  socket.on("message", onMessage);
  socket.off("message", onMessage);
  const events: ChatSocketEvent[] = ["message", "state", "error"];
  for (const event of events) socket.off(event, () => undefined);

  // Error codes: the proxy's and the client's are named; any other string is still a code.
  const clientCode: ClientErrorCode = "queue_full";
  const proxyCode: ProxyErrorCode = "unknown_connection";
  const newer: ErrorCode = "a_code_of_a_newer_proxy";
  void [clientCode, proxyCode, newer];
  const err = new ChatSocketError("timeout", "no answer", { retryable: true });
  const asFrame: ErrorFrame = err.toFrame();
  void [err.name, err.code, err.retryable, err.frame, err.status, err.cause, asFrame];

  // Options, defaults and constants.
  const defaults: Defaults = DEFAULTS;
  const refreshAhead: boolean = DEFAULTS.proactiveRefresh;
  const type: ConnectionType = DEFAULTS.type;
  const limit: 131072 = MAX_FRAME_BYTES;
  const clock: Clock = { now: () => 0, setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as number) };
  const options: ChatSocketOptions = { url: "ws://x", type: "feed", clock, random: () => 0.5, messageKey: () => undefined, proactiveRefresh: false };
  const WS: WebSocketConstructor = WebSocket;
  const requestOptions: RequestOptions = { timeoutMs: 1 };
  void [defaults, refreshAhead, type, limit, options, WS, requestOptions];

  // One socket per user: a chat socket without bookingId, subscriptions to bookings.
  const user = new ChatSocket({ url: "ws://x", token: "jwt", cursor: (frame) => (frame.seq as Cursor | undefined) });
  const subscribeOptions: SubscribeOptions = { bookingId: "42", connectionType: "booking", since: 1187, timeoutMs: 5000 };
  const sub: Subscription = await user.subscribe({ bookingId: "43", onMessage: (frame: Frame) => void frame, onError: (frame) => void frame.code });
  const kind: BookingConnectionType = sub.connectionType;
  const state: SubscriptionState = sub.state;
  const cursor: Cursor | undefined = sub.cursor;
  const subs: Subscription[] = user.subscriptions;
  void [subscribeOptions, kind, state, cursor, subs, sub.bookingId];
  const stop: () => void = sub.on("message", (frame) => void frame.booking_id);
  stop();
  sub.on("error", (frame) => void [frame.code, frame.ref]);
  const onSubMessage: SubscriptionEvents["message"] = (frame) => void frame;
  sub.off("message", onSubMessage);
  const subEvents: SubscriptionEvent[] = ["message", "error"];
  void subEvents;
  sub.send({ body: "hi" });
  const answer = await sub.request<{ type: string; message: { id: number } }>({ body: "hi" }, { timeoutMs: 1000 });
  void answer.message.id;
  const present: PresenceFrame = await sub.presence();
  const users: string[] = present.users;
  const connections: number = present.connections;
  void [users, connections];
  const gone: void = await sub.unsubscribe();
  void gone;
  const notSubscribed: ClientErrorCode = "not_subscribed";
  const tooMany: ProxyErrorCode = "too_many_subscriptions";
  void [notSubscribed, tooMany];

  // @ts-expect-error: a subscription joins a booking's channel: chat or booking
  void user.subscribe({ bookingId: "42", connectionType: "feed" });
  // @ts-expect-error: the booking is required
  void user.subscribe({ since: 3 });
  // @ts-expect-error: a cursor is a string or a number
  void user.subscribe({ bookingId: "42", since: true });
  // @ts-expect-error: a subscription has two events
  sub.on("state", () => undefined);
  // @ts-expect-error: the state is read-only
  sub.state = "subscribed";

  // @ts-expect-error: the type is one of four
  new ChatSocket({ url: "ws://x", type: "group" });
  // @ts-expect-error: a state listener gets the state, not a frame
  socket.on("state", (frame: Frame) => void frame);
  // @ts-expect-error: an error listener gets an ErrorFrame, not a state
  socket.on("error", (state: SocketState) => void state);
  // @ts-expect-error: off() takes the events of on() only
  socket.off("open", () => undefined);
  // @ts-expect-error: off() checks the listener like on()
  socket.off("state", (frame: Frame) => void frame);
  // @ts-expect-error: not a client error code
  const typo: ClientErrorCode = "queue_ful";
  void typo;
  // @ts-expect-error: the url has no default
  void DEFAULTS.url;
  // @ts-expect-error: the defaults are read-only
  DEFAULTS.queueLimit = 5;
  // @ts-expect-error: the state is read-only
  socket.state = "open";
  // @ts-expect-error: three events only
  socket.on("open", () => undefined);
  // @ts-expect-error: the token is a string or a function
  new ChatSocket({ url: "ws://x", token: 42 });
  // @ts-expect-error: a frame is an object
  socket.send("text");
}
