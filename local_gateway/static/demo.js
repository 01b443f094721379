// The demo client: the browser's own WebSocket, exactly as CONTRACT.md §1 describes.
// Two sockets per page: `chat` (history, messages, reactions) and `booking` (status pushes).
"use strict";

const $ = (id) => document.getElementById(id);
const REACTIONS = ["❤️", "👍", "😂"];
const state = {
  stage: "development",
  user: null,
  booking: null,
  chat: null,
  watcher: null,
  closingOnPurpose: false,
  messages: new Map(), // message id -> { data, el }
  historyParts: [],
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

function setState(name, label) {
  const badge = $("state");
  badge.className = `state ${name}`;
  badge.textContent = label || name;
  const open = name === "open";
  $("message").disabled = !open;
  $("send").disabled = !open;
  $("disconnect").disabled = name === "closed";
  $("connect").disabled = name !== "closed";
  document.querySelectorAll(".actions button").forEach((b) => { b.disabled = !open; });
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
    throw new Error(`the backend answered ${response.status}: ${detail}`);
  }
  return answer;
}

function socketUrl(type, booking, token, transport) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = new URLSearchParams({ type, booking_id: booking });
  if (transport === "query") query.set("token", token);
  return `${scheme}://${location.host}/${state.stage}?${query}`;
}

function openSocket(type, booking, token, transport, onFrame) {
  const url = socketUrl(type, booking, token, transport);
  const ws = transport === "bearer" ? new WebSocket(url, ["bearer", token]) : new WebSocket(url);
  ws.addEventListener("message", (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      showError("the proxy sent a frame that is not JSON");
      return;
    }
    logFrame("←", type, frame);
    onFrame(frame);
  });
  return ws;
}

function errorText(frame) {
  if (frame.type === "error") {
    return `${frame.code}: ${frame.message}${frame.retryable ? " (try again)" : ""}`;
  }
  return frame.message || JSON.stringify(frame); // API Gateway's own {"message": "Internal server error"}
}

// -- chat -------------------------------------------------------------------

function renderMessage(message) {
  let entry = state.messages.get(message.id);
  if (!entry) {
    const el = document.createElement("li");
    entry = { data: message, el };
    state.messages.set(message.id, entry);
    $("messages").append(el);
  }
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
  switch (frame.type) {
    case "history": {
      // A history over 128 KB arrives in ordered parts: {"part": i, "parts": n}.
      state.historyParts.push(...(frame.messages || []));
      if (frame.parts && frame.part < frame.parts) return;
      if (frame.thread) $("thread-title").textContent = `Chat · ${frame.thread.title || frame.thread.id}`;
      state.historyParts.forEach(renderMessage);
      state.historyParts = [];
      scrollToEnd();
      return;
    }
    case "receipt":
      if (frame.unread) $("thread-title").textContent += ` · ${frame.unread} new`;
      return;
    case "message":
      renderMessage(frame.message);
      scrollToEnd();
      return;
    case "reaction": {
      const entry = state.messages.get(frame.message_id);
      if (entry) renderMessage({ ...entry.data, reactions: frame.reactions });
      return;
    }
    case "pong":
      return;
    default:
      if (frame.type === "error" || frame.message) showError(errorText(frame));
  }
}

function send(frame) {
  if (!state.chat || state.chat.readyState !== WebSocket.OPEN) {
    showError("not connected");
    return;
  }
  logFrame("→", "chat", frame);
  state.chat.send(JSON.stringify(frame));
}

// -- booking ----------------------------------------------------------------

function onBookingFrame(frame) {
  if (frame.type === "booking") {
    $("booking-status").textContent = frame.booking.status;
  } else if (frame.type === "booking_status") {
    $("booking-status").textContent = frame.status;
  } else if (frame.type === "error" || frame.message) {
    showError(errorText(frame));
  }
}

async function changeStatus(status) {
  clearError();
  try {
    await backend(`bookings/${encodeURIComponent(state.booking)}/status`, { status });
  } catch (err) {
    showError(err.message);
  }
}

// -- connecting ---------------------------------------------------------------

async function connect(event) {
  event.preventDefault();
  clearError();
  const user = $("user").value.trim();
  const booking = $("booking").value.trim();
  const transport = $("transport").value;
  setState("connecting");
  let token;
  try {
    token = (await backend("token", { user_id: user })).token;
  } catch (err) {
    showError(`no token for "${user}": ${err.message}`);
    setState("closed", "disconnected");
    return;
  }
  state.user = user;
  state.booking = booking;
  state.closingOnPurpose = false;
  state.messages.clear();
  state.historyParts = [];
  $("messages").replaceChildren();
  $("booking-id").textContent = booking;
  $("booking-status").textContent = "–";

  const chat = openSocket("chat", booking, token, transport, onChatFrame);
  let opened = false;
  chat.addEventListener("open", () => {
    opened = true;
    setState("open", `connected as ${user}`);
    $("message").focus();
  });
  chat.addEventListener("close", (event) => {
    if (!opened) {
      // The browser hides a refused handshake's HTTP status; the gateway's log shows it.
      showError("the connection was refused (a bad token is 401, a bad booking id 400: see the gateway's log)");
    } else if (!state.closingOnPurpose) {
      showError(`the connection closed (${event.code}${event.reason ? ": " + event.reason : ""})`);
    }
    if (state.watcher) state.watcher.close();
    state.chat = null;
    setState("closed", "disconnected");
  });
  state.chat = chat;
  state.watcher = openSocket("booking", booking, token, transport, onBookingFrame);
}

function disconnect() {
  state.closingOnPurpose = true;
  if (state.chat) state.chat.close(1000, "bye");
  if (state.watcher) state.watcher.close(1000, "bye");
}

function submitMessage(event) {
  event.preventDefault();
  const input = $("message");
  const body = input.value.trim();
  if (!body) return;
  const clientId = window.crypto && crypto.randomUUID ? crypto.randomUUID() : String(Date.now());
  send({ body, client_id: clientId });
  input.value = "";
}

async function start() {
  try {
    const config = await (await fetch("/demo/config")).json();
    state.stage = config.stage;
  } catch {
    showError("the gateway's /demo/config is unreachable");
  }
  const params = new URLSearchParams(location.search);
  if (params.get("user")) $("user").value = params.get("user");
  if (params.get("booking")) $("booking").value = params.get("booking");
  $("join").addEventListener("submit", connect);
  $("disconnect").addEventListener("click", disconnect);
  $("compose").addEventListener("submit", submitMessage);
  document.querySelectorAll(".actions button").forEach((button) => {
    button.addEventListener("click", () => changeStatus(button.dataset.status));
  });
  setState("closed", "disconnected");
}

start();
