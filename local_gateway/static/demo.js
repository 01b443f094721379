// The demo client, built on the client module (client/src, served at /client/), in two ways:
// - "All my bookings" (inbox.js): one socket for the user, subscribed to each of their
//   bookings: a list of conversations with unread counts and presence, one thread shown;
// - "One booking" (here): two ChatSockets, `chat` (history, messages, reactions) and
//   `booking` (status pushes), for one booking.
// The module keeps the sockets connected (keepalive, reconnect, token refresh, and for the
// user's socket its subscriptions); the page shows their state, e.g. "reconnecting in 3 s…".
// See docs/protocol.md.
import { ChatSocket } from "/client/index.js";
import { Inbox } from "/static/inbox.js";
import {
  $,
  changeStatus,
  clearError,
  drawMessage,
  logFrame,
  messageKey,
  onAttempt,
  onError,
  resetAttempts,
  scrollToEnd,
  showError,
  showState,
  showStatus,
  socketUrl,
  tokenProvider,
} from "/static/shared.js";

const state = {
  stage: "development",
  backendUrl: null,
  mode: "user", // "user": one socket for all the user's bookings; "booking": the sockets of one booking
  inbox: null, // the user's socket and its conversations (mode "user")
  lastRead: null,
  user: null,
  booking: null,
  chat: null,
  watcher: null,
  messages: new Map(), // message key (id and creation time) -> { data, el }
  byId: new Map(), // message id -> the latest entry with that id (reactions name the id)
};

function clearUnread() {
  $("unread").hidden = true;
  $("unread").textContent = "";
}

function setControls(connected) {
  $("message").disabled = !connected;
  $("send").disabled = !connected;
  document.querySelectorAll(".actions button").forEach((b) => { b.disabled = !connected; });
}

// -- chat -------------------------------------------------------------------

function renderMessage(message) {
  const key = messageKey(message);
  let entry = state.messages.get(key);
  if (!entry) {
    const el = document.createElement("li");
    entry = { data: message, el };
    state.messages.set(key, entry);
    $("messages").append(el);
  }
  state.byId.set(message.id, entry);
  entry.data = message;
  drawMessage(entry.el, message, state.user, (emoji) => send({ type: "reaction", emoji, message_id: message.id }));
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
      if (frame.message && typeof frame.message === "string") showError(frame.message);
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
  if (state.mode === "user") {
    if (state.inbox) state.inbox.send(frame);
    else showError("not connected");
    return;
  }
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
    showError(frame.message);
  }
}

// -- connecting ---------------------------------------------------------------

function clearMessages() {
  state.messages.clear();
  state.byId.clear();
  $("messages").replaceChildren();
}

function resetPanels() {
  clearMessages();
  $("thread-title").textContent = "Chat";
  $("presence").textContent = "";
  clearUnread();
  state.lastRead = null;
  $("booking-id").textContent = "–";
  $("booking-status").textContent = "–";
  delete $("booking-status").dataset.status;
}

/** The form follows the mode: "All my bookings" needs no booking (it opens one more when given). */
function showMode() {
  state.mode = $("mode").value;
  const all = state.mode === "user";
  document.body.classList.toggle("inbox", all);
  $("booking").required = !all;
  $("booking-label").firstChild.textContent = all ? "Open booking " : "Booking ";
  $("conversations").hidden = !all;
}

async function connect(event) {
  event.preventDefault();
  clearError();
  showMode();
  const user = $("user").value.trim();
  const booking = $("booking").value.trim();
  const transport = $("transport").value;
  state.user = user;
  state.booking = booking;
  resetAttempts();
  resetPanels();
  const token = tokenProvider(user, state.backendUrl);
  if (state.mode === "user") {
    state.inbox = new Inbox({
      url: socketUrl(state.stage),
      user,
      token,
      transport,
      open: booking || null,
      onState: (name, detail) => showState(name, detail, user, (usable) => state.inbox?.setControls(usable)),
      onClosed: (keepError) => disconnect({ keepError }),
    });
    state.inbox.connect();
    return;
  }
  const common = { url: socketUrl(state.stage), bookingId: booking, token, transport, reconnectMaxDelayMs: 10_000 };
  // Every message "never a repeat" for the module: each history arrives whole and replaces the
  // view, and renderMessage() shows a message once however often it comes.
  const chat = new ChatSocket({ ...common, type: "chat", messageKey: () => undefined });
  const watcher = new ChatSocket({ ...common, type: "booking" });
  state.chat = chat;
  state.watcher = watcher;
  chat.on("state", (name, detail) => {
    if (state.chat !== chat) return;
    showState(name, detail, user, setControls);
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
  const { chat, watcher, inbox } = state;
  state.chat = null;
  state.watcher = null;
  state.inbox = null;
  if (chat) chat.close(1000, "bye");
  if (watcher) watcher.close(1000, "bye");
  if (inbox) inbox.close();
  resetPanels();
  showState("closed", {}, state.user, (usable) => setControls(usable));
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
  if (["user", "booking"].includes(params.get("mode"))) $("mode").value = params.get("mode");
  showMode();
  $("mode").addEventListener("change", showMode);
  $("join").addEventListener("submit", connect);
  $("disconnect").addEventListener("click", () => disconnect());
  $("compose").addEventListener("submit", submitMessage);
  $("open").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("open-booking").value.trim();
    if (!id) return;
    if (!state.inbox) {
      showError("not connected");
      return;
    }
    state.inbox.open(id, { select: true });
    $("open-booking").value = "";
  });
  // "· N new" is read once the reader is in the chat.
  $("message").addEventListener("focus", clearUnread);
  $("message").addEventListener("input", clearUnread);
  $("messages").addEventListener("click", clearUnread);
  document.querySelectorAll(".actions button").forEach((button) => {
    button.addEventListener("click", () =>
      changeStatus(state.mode === "user" ? state.inbox?.selected : state.booking, button.dataset.status),
    );
  });
  showState("closed", {}, null, setControls);
}

// For the browser test and the curious: the page's sockets and its send().
window.demo = {
  send,
  get chat() { return state.chat; },
  get watcher() { return state.watcher; },
  /** The last message id the backend has recorded as read by this page (its answer to markRead). */
  get lastRead() { return state.lastRead; },
  /** The user's socket and its conversations (mode "All my bookings"). */
  get inbox() { return state.inbox; },
};

start();
