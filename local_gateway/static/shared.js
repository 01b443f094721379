// What both ways of connecting share: the banner, the frame log, the backend's development
// calls through the gateway, and how a message is drawn.

export const $ = (id) => document.getElementById(id);
export const REACTIONS = ["❤️", "👍", "😂"];
/** What the page shows for each booking status (the backend's values). */
export const STATUS_LABELS = {
  pending: "Pending",
  confirmed: "Confirmed",
  checked_in: "Checked in",
  completed: "Completed",
  cancelled: "Cancelled",
};

export function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = false;
}

export function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

export function logFrame(direction, kind, frame) {
  const li = document.createElement("li");
  const text = JSON.stringify(frame);
  li.textContent = `${direction} ${kind} ${text.length > 300 ? text.slice(0, 300) + "…" : text}`;
  const list = $("frames");
  list.append(li);
  while (list.children.length > 60) list.firstChild.remove();
}

export async function backend(path, body) {
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

export function errorText(frame) {
  if (frame.type === "error") {
    return `${frame.code}: ${frame.message}${frame.retryable ? " (try again)" : ""}`;
  }
  return frame.message || JSON.stringify(frame); // API Gateway's own {"message": "Internal server error"}
}

/** The token provider for `user`: a fresh development token for every (re)connect and refresh. */
export function tokenProvider(user, backendUrl) {
  return async () => {
    try {
      return (await backend("token", { user_id: user })).token;
    } catch (err) {
      // The reference backend serves POST /dev/token; a backend of one's own (--backend-url) may not.
      const from = backendUrl ? ` from ${backendUrl}` : "";
      throw new Error(
        `no development token${from}: ${err.message} (the reference backend serves that route; a backend of your own may not)`,
      );
    }
  };
}

export function socketUrl(stage) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/${stage}`;
}

/** A message's identity: a backend that restarts may reuse ids (the reference backend does). */
export function messageKey(message) {
  return `${message.id}|${message.created_at || ""}`;
}

/** Draw `message` into `el` (a list item): author, time, body, reaction buttons calling `react(emoji)`. */
export function drawMessage(el, message, me, react) {
  el.className = "message" + (message.user_id === me ? " mine" : "");
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
    button.className = users.includes(me) ? "active" : "";
    button.addEventListener("click", () => react(emoji));
    reactions.append(button);
  }
  el.replaceChildren(meta, body, reactions);
}

export function scrollToEnd() {
  const list = $("messages");
  list.scrollTop = list.scrollHeight;
}

// -- the connection's state, and why it has not opened ----------------------------------------

const attempts = {
  countdown: null,
  opened: new Set(), // the sockets ("chat", "booking") that have opened since Connect
  failure: new Map(), // socket -> why its latest attempt failed, until it first opens
  text: null, // the banner's text when it shows a failed attempt (cleared once open)
};

export function resetAttempts() {
  attempts.opened.clear();
  attempts.failure.clear();
  attempts.text = null;
}

/**
 * The badge: a socket's state, with a countdown while it waits to reconnect; the form's
 * buttons follow, and `controls(usable)` enables what can be sent (frames typed while
 * reconnecting are queued by the module and sent on reconnect).
 */
export function showState(name, detail, user, controls) {
  const badge = $("state");
  clearInterval(attempts.countdown);
  attempts.countdown = null;
  badge.className = `state ${name}`;
  const active = name !== "closed";
  $("disconnect").disabled = !active;
  $("connect").disabled = active;
  $("mode").disabled = active;
  controls(name === "open" || name === "reconnecting");
  if (name === "open") {
    badge.textContent = `connected as ${user}`;
  } else if (name === "closed") {
    badge.textContent = "disconnected";
  } else if (detail.phase === "waiting" && detail.retryAt) {
    const verb = name === "reconnecting" ? "reconnecting" : "connecting";
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((detail.retryAt - Date.now()) / 1000));
      badge.textContent = `${verb} in ${seconds} s…`;
    };
    tick();
    attempts.countdown = setInterval(tick, 250);
  } else {
    badge.textContent = name === "reconnecting" ? "reconnecting…" : "connecting…";
  }
}

/**
 * Errors of the client module that it retries (a token it could not get, a request that timed
 * out) are the badge's once the socket has opened; before that, nothing else says why the page
 * keeps "connecting", so the banner does (with the retry, in onAttempt). `prefix` names what
 * the error is about (a booking, on the user's socket).
 */
export function onError(kind, frame, prefix = "") {
  logFrame("←", kind, frame);
  if (frame.source === "client" && frame.retryable && !frame.booking_id) {
    if (!attempts.opened.has(kind)) attempts.failure.set(kind, frame.message);
    return;
  }
  showError(prefix + errorText(frame));
}

/** Every failed attempt before a socket first opens goes to the banner, with its reason. */
export function onAttempt(kind, name, detail = {}) {
  if (name === "open") {
    attempts.opened.add(kind);
    attempts.failure.delete(kind);
    if (attempts.text !== null && $("error").textContent === attempts.text) clearError();
    attempts.text = null;
    return;
  }
  if (attempts.opened.has(kind) || detail.phase !== "waiting") return;
  // Browsers hide a refused handshake's status and body: the gateway's terminal shows them.
  const why =
    attempts.failure.get(kind) ||
    `the handshake was refused or the gateway is unreachable (${detail.reason || "no reason given"}; ` +
      "the browser does not say which, the gateway's terminal does)";
  attempts.failure.delete(kind);
  attempts.text = `The ${kind} connection could not open: ${why}. Retrying.`;
  showError(attempts.text);
}

/** A booking's status, as the booking panel shows it. */
export function showStatus(status) {
  const el = $("booking-status");
  el.textContent = STATUS_LABELS[status] || status;
  el.dataset.status = status;
}

/** Ask the backend to change `booking`'s status; a refusal (409) says why, in the banner. */
export async function changeStatus(booking, status) {
  clearError();
  if (!booking) {
    showError("no booking is selected");
    return;
  }
  try {
    await backend(`bookings/${encodeURIComponent(booking)}/status`, { status });
  } catch (err) {
    // 409: the backend refuses a change its rules do not allow, and says why.
    const label = STATUS_LABELS[status] || status;
    showError(err.status === 409 ? `Not changed to ${label}: ${err.detail}.` : err.message);
  }
}
