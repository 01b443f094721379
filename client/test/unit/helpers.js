import { ChatSocket } from "../../src/index.js";
import { FakeClock, fakeWebSocketClass, settle } from "./fakes.js";

export const URL_ = "ws://gateway.test/development";

/**
 * A ChatSocket on a fake clock and fake sockets; records every event it emits.
 * `random` is what Math.random would return (1 - 1e-9: the top of each backoff range).
 */
export function setup(options = {}, { browser = false, random = 1 - 1e-9 } = {}) {
  const clock = new FakeClock();
  const { FakeWebSocket, sockets } = fakeWebSocketClass({ browser });
  const tokens = options.tokens ?? ["token-1"];
  let tokenCalls = 0;
  const provider = async () => {
    const value = tokens[Math.min(tokenCalls, tokens.length - 1)];
    tokenCalls += 1;
    if (value instanceof Error) throw value;
    return value;
  };
  const { tokens: _ignored, ...rest } = options;
  const socket = new ChatSocket({
    url: URL_,
    type: "chat",
    bookingId: "42",
    token: provider,
    WebSocket: FakeWebSocket,
    clock,
    random: typeof random === "function" ? random : () => random,
    ...rest,
  });
  const messages = [];
  const states = [];
  const errors = [];
  socket.on("message", (frame) => messages.push(frame));
  socket.on("state", (state, detail) => states.push({ state, ...detail }));
  socket.on("error", (frame) => errors.push(frame));
  return {
    socket,
    clock,
    sockets,
    messages,
    states,
    errors,
    tokenCalls: () => tokenCalls,
    last: () => sockets[sockets.length - 1],
  };
}

/** connect() and accept the handshake; the first socket. */
export async function connected(env) {
  const done = env.socket.connect();
  await settle();
  const ws = env.last();
  ws.accept();
  await done;
  return ws;
}

export { settle };

/** Let the reconnect delay the socket announced run out: the next attempt starts. */
export async function waitOut(env) {
  await settle();
  const last = env.states.at(-1);
  if (!last || last.phase !== "waiting") throw new Error(`not waiting to reconnect: ${JSON.stringify(last)}`);
  await env.clock.advance(last.delayMs);
}
