// Compiled by `npm run typecheck` only: the declarations must accept what the docs show and
// reject what they forbid (each @ts-expect-error fails the check if the line compiles).
import { ChatSocket, ChatSocketError, DEFAULTS, jwtExpiry, type Frame, type SocketState } from "@ws-proxy/client";

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

  // @ts-expect-error: the type is one of four
  new ChatSocket({ url: "ws://x", type: "group" });
  // @ts-expect-error: three events only
  socket.on("open", () => undefined);
  // @ts-expect-error: the token is a string or a function
  new ChatSocket({ url: "ws://x", token: 42 });
  // @ts-expect-error: a frame is an object
  socket.send("text");
}
