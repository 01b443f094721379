// The demo client, built on the client module (client/src, served at /client/): two
// ChatSockets per page, `chat` (history, messages, reactions) and `booking` (status pushes).
// The module keeps them connected (keepalive, reconnect, token refresh); the page shows its
// state, e.g. "reconnecting in 3 s…". See docs/protocol.md.
import { ChatSocket } from "/client/index.js";

const $ = (id) => document.getElementById(id);
const REACTIONS = ["❤️", "👍", "😂"];
/** What the page shows for each booking status (the backend's values). */
const STATUS_LABELS = {
  pending: "Pending",
  confirmed: "Confirmed",
  checked_in: "Checked in",
  completed: "Completed",
  cancelled: "Cancelled",
};
const state = {
  stage: "development",
  backendUrl: null,
  lastRead: null,
  user: null,
  booking: null,
  chat: null,
  watcher: null,
  messages: new Map(), // message key (id and creation time) -> { data, el }
  byId: new Map(), // message id -> the latest entry with that id (reactions name the id)
  countdown: null,
  opened: new Set(), // the sockets ("chat", "booking") that have opened since Connect
  failure: new Map(), // socket -> why its latest attempt failed, until it first opens
  attemptText: null, // the banner's text when it shows a failed attempt (cleared once open)
};

function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function clearUnread() {
  $("unread").hidden = true;
  $("unread").textContent = "";
}

function setControls(connected) {
  $("message").disabled = !connected;
  $("send").disabled = !connected;
  document.querySelectorAll(".actions button").forEach((b) => { b.disabled = !connected; });
}

/** The badge: the chat socket's state, with a countdown while it waits to reconnect. */
function showState(name, detail = {}) {
  const badge = $("state");
  clearInterval(state.countdown);
  state.countdown = null;
  badge.className = `state ${name}`;
  const active = name !== "closed";
  $("disconnect").disabled = !active;
  $("connect").disabled = active;
  // Frames typed while reconnecting are queued by the module and sent on reconnect.
  setControls(name === "open" || name === "reconnecting");
  if (name === "open") {
    badge.textContent = `connected as ${state.user}`;
  } else if (name === "closed") {
    badge.textContent = "disconnected";
  } else if (detail.phase === "waiting" && detail.retryAt) {
    const verb = name === "reconnecting" ? "reconnecting" : "connecting";
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((detail.retryAt - Date.now()) / 1000));
      badge.textContent = `${verb} in ${seconds} s…`;
    };
    tick();
    state.countdown = setInterval(tick, 250);
  } else {
    badge.textContent = name === "reconnecting" ? "reconnecting…" : "connecting…";
  }
}

function logFrame(direction, kind, frame) {
  const li = document.createElement("li");
  const text = JSON.stringify(frame);
  li.textContent = `${direction} ${kind} ${text.length > 300 ? text.slice(0, 300) + "…" : text}`;
  const list = $("frames");
  list.append(li);
  while (list.children.length > 60) list.firstChild.remove();
}

async function backend(path, body) {
  let response;
  try {
    response = await fetch(`/demo/api/dev/${path}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (err) {
    throw new Error(`the gateway is unreachable (${err.message})`);
  }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail || answer);
    const error = new Error(`the backend answered ${response.status} to POST /dev/${path}: ${detail}`);
    error.status = response.status;
    error.detail = detail;
    throw error;
  }
  return answer;
}

function errorText(frame) {
  if (frame.type === "error") {
    return `${frame.code}: ${frame.message}${frame.retryable ? " (try again)" : ""}`;
  }
  return frame.message || JSON.stringify(frame); // API Gateway's own {"message": "Internal server error"}
}

/**
 * Errors of the client module that it retries (a token it could not get, a request that timed
 * out) are the badge's once the socket has opened; before that, nothing else says why the page
 * keeps "connecting", so the banner does (with the retry, in onAttempt).
 */
function onError(kind, frame) {
  logFrame("←", kind, frame);
  if (frame.source === "client" && frame.retryable) {
    if (!state.opened.has(kind)) state.failure.set(kind, frame.message);
    return;
  }
  showError(errorText(frame));
}

/** Every failed attempt before a socket first opens goes to the banner, with its reason. */
function onAttempt(kind, name, detail = {}) {
  if (name === "open") {
    state.opened.add(kind);
    state.failure.delete(kind);
    if (state.attemptText !== null && $("error").textContent === state.attemptText) clearError();
    state.attemptText = null;
    return;
  }
  if (state.opened.has(kind) || detail.phase !== "waiting") return;
  // Browsers hide a refused handshake's status and body: the gateway's terminal shows them.
  const why =
    state.failure.get(kind) ||
    `the handshake was refused or the gateway is unreachable (${detail.reason || "no reason given"}; ` +
      "the browser does not say which, the gateway's terminal does)";
  state.failure.delete(kind);
  state.attemptText = `The ${kind} connection could not open: ${why}. Retrying.`;
  showError(state.attemptText);
}

// -- chat -------------------------------------------------------------------

function renderMessage(message) {
  // A backend that restarts may reuse ids (the reference backend does): the key adds the time.
  const key = `${message.id}|${message.created_at || ""}`;
  let entry = state.messages.get(key);
  if (!entry) {
    const el = document.createElement("li");
    entry = { data: message, el };
    state.messages.set(key, entry);
    $("messages").append(el);
  }
  state.byId.set(message.id, entry);
  entry.data = message;
  const el = entry.el;
  el.className = "message" + (message.user_id === state.user ? " mine" : "");
  el.dataset.id = message.id;

  const meta = document.createElement("div");
  meta.className = "meta";
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = message.user_id;
  const time = document.createElement("time");
  time.textContent = message.created_at ? new Date(message.created_at).toLocaleTimeString() : "";
  meta.append(author, time);

  const body = document.createElement("div");
  body.className = "body";
  body.textContent = message.body;

  const reactions = document.createElement("div");
  reactions.className = "reactions";
  const current = message.reactions || {};
  const emojis = [...new Set([...REACTIONS, ...Object.keys(current)])];
  for (const emoji of emojis) {
    const users = current[emoji] || [];
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = users.length ? `${emoji} ${users.length}` : emoji;
    button.title = users.length ? users.join(", ") : `react with ${emoji}`;
    button.className = users.includes(state.user) ? "active" : "";
    button.addEventListener("click", () => send({ type: "reaction", emoji, message_id: message.id }));
    reactions.append(button);
  }
  el.replaceChildren(meta, body, reactions);
}

function scrollToEnd() {
  const list = $("messages");
  list.scrollTop = list.scrollHeight;
}

function onChatFrame(frame) {
  logFrame("←", "chat", frame);
  switch (frame.type) {
    case "history":
      // The module re-joins a history sent in parts, and passes every history whole
      // (messageKey in connect()). On a reconnect the view becomes what the server sends:
      // after a restart of the stack, messages it no longer has leave the screen.
      if (frame.thread) $("thread-title").textContent = `Chat · ${frame.thread.title || frame.thread.id}`;
      clearMessages();
      (frame.messages || []).forEach(renderMessage);
      scrollToEnd();
      return;
    case "receipt":
      if (!("unread" in frame)) {
        state.lastRead = frame.last_read_message_id; // the answer to markRead()
        return;
      }
      if (frame.unread) {
        $("unread").textContent = `· ${frame.unread} new`;
        $("unread").hidden = false;
      } else {
        clearUnread();
      }
      return;
    case "message":
      renderMessage(frame.message);
      scrollToEnd();
      markRead(frame.message);
      return;
    case "reaction": {
      const entry = state.byId.get(frame.message_id);
      if (entry) renderMessage({ ...entry.data, reactions: frame.reactions });
      return;
    }
    default:
      if (frame.message && typeof frame.message === "string") showError(errorText(frame));
  }
}

/**
 * A message from someone else, shown live, has been seen: tell the backend, so that the next
 * connect's "N new" counts only what this page did not show.
 */
function markRead(message) {
  if (!state.chat || message.user_id === state.user || !Number.isInteger(message.id)) return;
  const frame = { type: "read", message_id: message.id };
  try {
    state.chat.send(frame);
    logFrame("→", "chat", frame);
  } catch {
    // Not sent (closed meanwhile): the message stays unread, as it would on a phone that went away.
  }
}

function send(frame) {
  if (!state.chat) {
    showError("not connected");
    return;
  }
  try {
    state.chat.send(frame);
    logFrame("→", "chat", frame);
  } catch (err) {
    showError(err.message); // closed, or too many frames waiting for the connection
  }
}

// -- booking ----------------------------------------------------------------

function onBookingFrame(frame) {
  logFrame("←", "booking", frame);
  if (frame.type === "booking") {
    // Shown once the proxy has accepted the booking (never a refused id).
    $("booking-id").textContent = frame.booking.booking_id;
    showStatus(frame.booking.status);
  } else if (frame.type === "booking_status") {
    showStatus(frame.status);
  } else if (frame.message && typeof frame.message === "string") {
    showError(errorText(frame));
  }
}

function showStatus(status) {
  const el = $("booking-status");
  el.textContent = STATUS_LABELS[status] || status;
  el.dataset.status = status;
}

async function changeStatus(status) {
  clearError();
  try {
    await backend(`bookings/${encodeURIComponent(state.booking)}/status`, { status });
  } catch (err) {
    // 409: the backend refuses a change its rules do not allow, and says why.
    const label = STATUS_LABELS[status] || status;
    showError(err.status === 409 ? `Not changed to ${label}: ${err.detail}.` : err.message);
  }
}

// -- connecting ---------------------------------------------------------------

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/${state.stage}`;
}

function clearMessages() {
  state.messages.clear();
  state.byId.clear();
  $("messages").replaceChildren();
}

function resetPanels() {
  clearMessages();
  $("thread-title").textContent = "Chat";
  clearUnread();
  state.lastRead = null;
  $("booking-id").textContent = "–";
  $("booking-status").textContent = "–";
  delete $("booking-status").dataset.status;
}

async function connect(event) {
  event.preventDefault();
  clearError();
  const user = $("user").value.trim();
  const booking = $("booking").value.trim();
  const transport = $("transport").value;
  state.user = user;
  state.booking = booking;
  state.opened.clear();
  state.failure.clear();
  state.attemptText = null;
  resetPanels();
  // Called for every (re)connect and every refresh: a fresh development token each time.
  const token = async () => {
    try {
      return (await backend("token", { user_id: user })).token;
    } catch (err) {
      // The reference backend serves POST /dev/token; a backend of one's own (--backend-url) may not.
      const from = state.backendUrl ? ` from ${state.backendUrl}` : "";
      throw new Error(
        `no development token${from}: ${err.message} (the reference backend serves that route; a backend of your own may not)`,
      );
    }
  };
  const common = { url: socketUrl(), bookingId: booking, token, transport, reconnectMaxDelayMs: 10_000 };
  // Every message "never a repeat" for the module: each history arrives whole and replaces the
  // view, and renderMessage() shows a message once however often it comes.
  const chat = new ChatSocket({ ...common, type: "chat", messageKey: () => undefined });
  const watcher = new ChatSocket({ ...common, type: "booking" });
  state.chat = chat;
  state.watcher = watcher;
  chat.on("state", (name, detail) => {
    if (state.chat !== chat) return;
    showState(name, detail);
    onAttempt("chat", name, detail);
    if (name === "open") $("message").focus();
  });
  chat.on("message", onChatFrame);
  chat.on("error", (frame) => state.chat === chat && onError("chat", frame));
  watcher.on("state", (name, detail) => state.watcher === watcher && onAttempt("booking", name, detail));
  watcher.on("message", onBookingFrame);
  watcher.on("error", (frame) => state.watcher === watcher && onError("booking", frame));
  watcher.connect().catch(() => {}); // its errors arrive as error events
  try {
    await chat.connect();
  } catch (err) {
    if (state.chat !== chat) return; // disconnected meanwhile
    showError(
      err.status
        ? `the connection was refused (HTTP ${err.status})`
        : `the connection failed: ${err.message}`,
    );
    disconnect({ keepError: true });
  }
}

function disconnect({ keepError = false } = {}) {
  if (!keepError) clearError();
  const { chat, watcher } = state;
  state.chat = null;
  state.watcher = null;
  if (chat) chat.close(1000, "bye");
  if (watcher) watcher.close(1000, "bye");
  resetPanels();
  showState("closed");
}

function submitMessage(event) {
  event.preventDefault();
  const input = $("message");
  const body = input.value.trim();
  if (!body) return;
  const clientId = window.crypto && crypto.randomUUID ? crypto.randomUUID() : String(Date.now());
  send({ body, client_id: clientId });
  input.value = "";
  clearUnread();
}

async function start() {
  try {
    const config = await (await fetch("/demo/config")).json();
    state.stage = config.stage;
    state.backendUrl = config.backend_url;
  } catch {
    showError("the gateway's /demo/config is unreachable");
  }
  const params = new URLSearchParams(location.search);
  if (params.get("user")) $("user").value = params.get("user");
  if (params.get("booking")) $("booking").value = params.get("booking");
  $("join").addEventListener("submit", connect);
  $("disconnect").addEventListener("click", () => disconnect());
  $("compose").addEventListener("submit", submitMessage);
  // "· N new" is read once the reader is in the chat.
  $("message").addEventListener("focus", clearUnread);
  $("message").addEventListener("input", clearUnread);
  $("messages").addEventListener("click", clearUnread);
  document.querySelectorAll(".actions button").forEach((button) => {
    button.addEventListener("click", () => changeStatus(button.dataset.status));
  });
  showState("closed");
}

// For the browser test and the curious: the page's sockets and its send().
window.demo = {
  send,
  get chat() { return state.chat; },
  get watcher() { return state.watcher; },
  /** The last message id the backend has recorded as read by this page (its answer to markRead). */
  get lastRead() { return state.lastRead; },
};

start();
