// Type declarations of @ws-proxy/client (written by hand; checked by `npm run typecheck`).

export type ConnectionType = "chat" | "booking" | "notification" | "feed";
export type SocketState = "connecting" | "open" | "reconnecting" | "closed";

/** A frame: a JSON object. */
export type Frame = { [key: string]: unknown };

/** The proxy's error codes (docs/protocol.md, "Errors"). */
export type ProxyErrorCode =
  | "invalid_message"
  | "too_large"
  | "unknown_connection"
  | "unauthorized"
  | "forbidden"
  | "backend_unavailable"
  | "backend_error"
  | "delivery_failed"
  | "too_many_subscriptions";

/** The client's own error codes (client/README.md, "Errors"). */
export type ClientErrorCode =
  | "closed"
  | "queue_full"
  | "too_large"
  | "invalid_frame"
  | "timeout"
  | "connection_lost"
  | "refused"
  | "token_expired"
  | "token_unavailable"
  | "connect_failed"
  | "invalid_url"
  | "not_subscribed";

/** Any error code: the proxy's, the client's, or one a newer proxy may add. */
export type ErrorCode = ProxyErrorCode | ClientErrorCode | (string & {});

/** The proxy's error frame; the client's own errors have the same shape with `source: "client"`. */
export interface ErrorFrame extends Frame {
  type: "error";
  code: ErrorCode;
  message: string;
  retryable: boolean;
  ref?: string | number;
  /** Only on the client's own errors. */
  source?: "client";
  /** The HTTP status of a refused handshake, when known. */
  status?: number;
}

/** What a "state" listener receives besides the state. */
export interface StateDetail {
  /** reconnecting/connecting: the attempt number since the last stable connection. */
  attempt?: number;
  /** reconnecting/connecting: how long until the next attempt ("waiting"), 0 when it is under way. */
  delayMs?: number;
  /** reconnecting/connecting: when the next attempt starts (the clock's milliseconds). */
  retryAt?: number;
  /** "waiting" for the backoff delay, or "connecting" (the attempt is under way). */
  phase?: "waiting" | "connecting";
  /** Why the state changed, in words. */
  reason?: string;
  /** closed: the error code that ended the socket ("refused", "closed", ...). */
  code?: ErrorCode;
  /** closed: the HTTP status of a refused handshake, when known. */
  status?: number;
  /** open: how the socket was opened. */
  purpose?: "connect" | "reconnect" | "switch";
}

/** The timers the client uses; inject a fake one in tests. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Any WebSocket constructor with the browser's interface (the ws package's WebSocket fits). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (event: any) => void): void;
};

export interface ChatSocketOptions {
  /** The stage URL: ws://127.0.0.1:3001/development or wss://{api}.execute-api.{region}.amazonaws.com/{stage}. */
  url: string;
  /** Default "chat". */
  type?: ConnectionType;
  /** 1-64 of [A-Za-z0-9_-]. Required for booking; a chat socket without it is the user's own socket (subscribe()). */
  bookingId?: string;
  /** The token, or a function called for every (re)connect and every refresh. Optional for feed. */
  token?: string | (() => string | Promise<string>);
  /** "query" (?token=, default) or "bearer" (the Sec-WebSocket-Protocol: bearer, token). */
  transport?: "query" | "bearer";
  /** The WebSocket constructor; default globalThis.WebSocket (Node 20 has none: pass the ws package's). */
  WebSocket?: WebSocketConstructor;
  /** Ping after this long without a frame sent. Default 240000 (4 min; API Gateway's idle limit is 10). */
  pingIntervalMs?: number;
  /** No frame within this long after a keepalive ping: the socket is dead. Default 30000. */
  pongTimeoutMs?: number;
  /** API Gateway's connection lifetime. Default 7200000 (2 h). */
  maxLifetimeMs?: number;
  /** Open the next socket this long before the lifetime ends. Default 300000. */
  switchOverBeforeMs?: number;
  /** After a switch-over, the old socket stays this long at most for answers to requests sent on it. Default 5000. */
  switchOverDrainMs?: number;
  /** A handshake must complete within this long, and so must each call of the token provider. Default 15000. */
  connectTimeoutMs?: number;
  /** Backoff: attempt n waits random(0, min(max, base * 2^n)). Defaults 500 and 30000. */
  reconnectBaseDelayMs?: number;
  reconnectMaxDelayMs?: number;
  /** A connection open this long resets the backoff. Default 10000. */
  stableAfterMs?: number;
  /** Consecutive failed attempts before the socket gives up ("closed", code connect_failed). Default Infinity. */
  maxAttempts?: number;
  /** Frames held while not connected. Default 100. */
  queueLimit?: number;
  /** Default timeout of request(). Default 10000. */
  requestTimeoutMs?: number;
  /** Refresh a JWT ahead of its exp (true, default), or only after an unauthorized answer (false). */
  proactiveRefresh?: boolean;
  /** Refresh a JWT this long before its exp. Default 60000. */
  refreshBeforeExpiryMs?: number;
  /** At most one refresh per this long. Default 30000. */
  minRefreshIntervalMs?: number;
  /** Message keys remembered to drop repeats. Default 10000. */
  dedupeLimit?: number;
  /** A message's identity; default its id and created_at. Return undefined for "never a repeat". */
  messageKey?: (message: any) => string | undefined;
  /** A frame's cursor, sent as `since` when subscribing again; default frame.message.id (a history: its last message's id). */
  cursor?: (frame: Frame) => Cursor | undefined;
  /** Timers (tests). */
  clock?: Clock;
  /** A number in [0, 1) (tests). */
  random?: () => number;
}

export interface RequestOptions {
  /** Default: the socket's requestTimeoutMs. */
  timeoutMs?: number;
}

/** Every event and its listener: `on(event, listener)`, `off(event, listener)`. */
export interface ChatSocketEvents {
  /** Every frame from the proxy but what the client consumes itself; history parts re-joined, repeats dropped. */
  message: (frame: Frame) => void;
  /** Every change of state, and a new detail while reconnecting. */
  state: (state: SocketState, detail: StateDetail) => void;
  /** Error frames no request was waiting for, and the client's own errors (`source: "client"`). */
  error: (frame: ErrorFrame) => void;
}

export type ChatSocketEvent = keyof ChatSocketEvents;

/** Where a booking's frames were read up to: what `since` carries. */
export type Cursor = string | number;

/** The connection types whose channel is a booking's: what a subscription joins. */
export type BookingConnectionType = "chat" | "booking";

export interface SubscribeOptions {
  /** The booking: 1-64 of [A-Za-z0-9_-]. */
  bookingId: string;
  /** Default "chat". */
  connectionType?: BookingConnectionType;
  /** Resume after this cursor: the backend sends what came after it. */
  since?: Cursor;
  /** How long to wait for `subscribed`. Default: the socket's requestTimeoutMs. */
  timeoutMs?: number;
  /** Added as a "message" listener before the subscribe is sent: it gets the initial frames for sure. */
  onMessage?: SubscriptionEvents["message"];
  /** Added as an "error" listener before the subscribe is sent. */
  onError?: SubscriptionEvents["error"];
}

/**
 * subscribing: the first subscribe is under way; subscribed; resubscribing: subscribing again on a
 * new connection; failed: a subscribe again was refused (the error event says why); unsubscribed;
 * closed: the socket was closed.
 */
export type SubscriptionState = "subscribing" | "subscribed" | "resubscribing" | "failed" | "unsubscribed" | "closed";

/** Every event of a subscription and its listener. */
export interface SubscriptionEvents {
  /** Every frame the socket emits for this booking (its `booking_id`, and `connection_type` when the frame names one). */
  message: (frame: Frame) => void;
  /** Error frames for this booking no request was waiting for, and a failed subscribe again (with `booking_id`, `connection_type`). */
  error: (frame: ErrorFrame) => void;
}

export type SubscriptionEvent = keyof SubscriptionEvents;

/** The proxy's answer to presence(). */
export interface PresenceFrame extends Frame {
  type: "presence";
  booking_id: string;
  connection_type: BookingConnectionType;
  /** The distinct users with a live socket in the booking's channel. */
  users: string[];
  /** How many sockets. */
  connections: number;
  ref?: string | number;
}

/** One booking's channel on a ChatSocket, from subscribe(). */
export interface Subscription {
  readonly bookingId: string;
  readonly connectionType: BookingConnectionType;
  readonly state: SubscriptionState;
  /** The cursor of the last frame received for this booking (or the since it was subscribed with). */
  readonly cursor: Cursor | undefined;
  /** Adds a listener; returns a function that removes it. */
  on<E extends SubscriptionEvent>(event: E, listener: SubscriptionEvents[E]): () => void;
  off<E extends SubscriptionEvent>(event: E, listener: SubscriptionEvents[E]): void;
  /** ChatSocket.send() with `booking_id` added; also throws not_subscribed. */
  send(frame: Frame): void;
  /** ChatSocket.request() with `booking_id` added; also rejects with not_subscribed. */
  request<T extends Frame = Frame>(frame: Frame, options?: RequestOptions): Promise<T>;
  /** Sends presence; resolves with the proxy's answer. */
  presence(options?: RequestOptions): Promise<PresenceFrame>;
  /** Leaves the booking's channel; resolves on `unsubscribed` (or when the connection is gone). The same promise when called again. */
  unsubscribe(options?: RequestOptions): Promise<void>;
}

/** The options that have a default, and the default. */
export interface Defaults {
  type: ConnectionType;
  transport: "query" | "bearer";
  pingIntervalMs: number;
  pongTimeoutMs: number;
  maxLifetimeMs: number;
  switchOverBeforeMs: number;
  switchOverDrainMs: number;
  connectTimeoutMs: number;
  reconnectBaseDelayMs: number;
  reconnectMaxDelayMs: number;
  stableAfterMs: number;
  maxAttempts: number;
  queueLimit: number;
  requestTimeoutMs: number;
  proactiveRefresh: boolean;
  refreshBeforeExpiryMs: number;
  minRefreshIntervalMs: number;
  dedupeLimit: number;
}

/** API Gateway's message limit, both ways (128 KB). */
export declare const MAX_FRAME_BYTES: 131072;
export declare const DEFAULTS: Readonly<Defaults>;

/** The `exp` of a JWT in milliseconds since the epoch; undefined when not a JWT with a numeric exp. */
export declare function jwtExpiry(token: string): number | undefined;

export declare class ChatSocketError extends Error {
  constructor(code: ErrorCode, message: string, extra?: { frame?: ErrorFrame; status?: number; retryable?: boolean; cause?: unknown });
  readonly name: "ChatSocketError";
  /** A proxy error code (the frame's), or the client's: closed, queue_full, too_large, invalid_frame, timeout,
   * connection_lost, refused, token_expired, token_unavailable, connect_failed, invalid_url, not_subscribed. */
  code: ErrorCode;
  /** The proxy's error frame, when the proxy answered one. */
  frame?: ErrorFrame;
  /** The HTTP status of a refused handshake, when known. */
  status?: number;
  retryable: boolean;
  toFrame(): ErrorFrame;
}

export declare class ChatSocket {
  constructor(options: ChatSocketOptions);
  readonly state: SocketState;
  /** Frames waiting for a connection. */
  readonly queued: number;
  /** The live subscriptions (subscribed or resubscribing). */
  readonly subscriptions: Subscription[];
  /** Adds a listener (once, however often it is added); returns a function that removes it. */
  on<E extends ChatSocketEvent>(event: E, listener: ChatSocketEvents[E]): () => void;
  /** Removes a listener added with on(); nothing happens when it was not added. */
  off<E extends ChatSocketEvent>(event: E, listener: ChatSocketEvents[E]): void;
  /** Resolves when open; rejects (ChatSocketError) on a refusal a new token does not fix, close(), or maxAttempts. */
  connect(): Promise<void>;
  /** Sends now, or queues while not connected; throws ChatSocketError (closed, queue_full, too_large, invalid_frame). */
  send(frame: Frame): void;
  /** Adds an id (unless given); resolves with the frame whose ref is that id; rejects with ChatSocketError. */
  request<T extends Frame = Frame>(frame: Frame, options?: RequestOptions): Promise<T>;
  /** Joins a booking's channel; resolves on `subscribed`; rejects (ChatSocketError) with the proxy's error code, timeout, connection_lost, closed. */
  subscribe(options: SubscribeOptions): Promise<Subscription>;
  /** Fetches a token and sends auth; true when the proxy took a new token. */
  refreshToken(): Promise<boolean>;
  /** For good: no reconnect after this. */
  close(code?: number, reason?: string): void;
}
