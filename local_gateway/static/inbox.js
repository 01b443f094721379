// "All my bookings": one socket for the user (a ChatSocket without bookingId), subscribed to
// each of the user's bookings twice, `chat` (history, messages, reactions, presence) and
// `booking` (status pushes). The proxy tags every frame of a booking's channel with its
// booking_id, so one listener on the socket routes each frame to its conversation; the client
// module subscribes again after every reconnect, from the last message each booking had.
//
// Unread counts are the page's: the messages the backend counted unread when a conversation
// was first subscribed (its receipt), and every message from someone else that arrived since
// while the conversation was not the one shown, as long as the conversation has it. The one
// shown tells the backend what it showed (`read`).
import { ChatSocket } from "/client/index.js";
import {
  $,
  STATUS_LABELS,
  drawMessage,
  logFrame,
  messageKey,
  onAttempt,
  onError,
  scrollToEnd,
  showError,
  showStatus,
} from "/static/shared.js";

/** Failures that need no word: the page closed the socket, or the module will ask again itself. */
const QUIET = new Set(["closed", "connection_lost", "not_subscribed"]);

export class Inbox {
  constructor({ url, user, token, transport, open, onState, onClosed }) {
    this.user = user;
    this.selected = null;
    this.usable = false;
    this.closed = false;
    /** @type {Map<string, object>} booking id -> its conversation */
    this.convs = new Map();
    this._first = open; // the booking the form named: opened and shown first
    this._onClosed = onClosed;
    // messageKey: every message "never a repeat" for the module; the page shows each once
    // (by its key) and counts how often each came (received), so a repeat would show there.
    this.socket = new ChatSocket({ url, token, transport, reconnectMaxDelayMs: 10_000, messageKey: () => undefined });
    this.socket.on("state", (name, detail) => {
      if (this.closed) return;
      onState(name, detail);
      onAttempt("chat", name, detail);
    });
    this.socket.on("message", (frame) => !this.closed && this.onFrame(frame));
    this.socket.on("error", (frame) => !this.closed && this.onError(frame));
    $("conversation-list").replaceChildren();
  }

  async connect() {
    if (this._first) this.open(this._first, { select: true });
    try {
      await this.socket.connect();
    } catch (err) {
      if (this.closed) return;
      showError(err.status ? `the connection was refused (HTTP ${err.status})` : `the connection failed: ${err.message}`);
      this._onClosed(true);
    }
  }

  close() {
    this.closed = true;
    this.socket.close(1000, "bye");
    $("conversation-list").replaceChildren();
  }

  // -- conversations ----------------------------------------------------------------------------

  /** A conversation in the list (subscribed at once), shown when `select`. */
  open(id, { select = false } = {}) {
    const conv = this.convs.get(id) || this.add(id);
    if (select) this.select(id);
    if (!conv.chat && !conv.subscribing) this.subscribe(conv);
  }

  add(id) {
    const conv = {
      id,
      title: `Booking ${id}`,
      threadId: `booking-${id}`,
      status: null,
      unseen: new Set(), // keys of the messages from others it has that the page has not shown
      listed: 0, // the backend's count in the conversations frame, until the first receipt
      receipted: false,
      loaded: false, // its first history has come
      shown: false, // shown since its first history came: its receipt's count was seen
      histories: 0,
      messages: new Map(), // message key -> { data, el }
      byId: new Map(),
      received: new Map(), // message key -> how many `message` frames brought it
      online: new Set(),
      lastRead: null,
      chat: null,
      watch: null,
      subscribing: false,
      failed: null,
      el: null,
    };
    this.convs.set(id, conv);
    this.draw(conv);
    return conv;
  }

  /** Subscribe the socket to the booking's chat and its status; a refusal goes to the banner. */
  async subscribe(conv) {
    conv.subscribing = true;
    conv.failed = null;
    this.draw(conv);
    const subscribe = async (connectionType) => this.socket.subscribe({ bookingId: conv.id, connectionType });
    const [chat, watch] = await Promise.allSettled([
      conv.chat || subscribe("chat"),
      conv.watch || subscribe("booking"),
    ]);
    conv.subscribing = false;
    if (this.closed) return;
    const failures = [];
    for (const [key, result] of [["chat", chat], ["watch", watch]]) {
      if (result.status === "fulfilled") conv[key] = result.value;
      else failures.push(result.reason);
    }
    if (failures.length) {
      const err = failures[0];
      conv.failed = `${err.code || "error"}: ${err.message}`;
      if (err.code !== "closed") showError(`Booking ${conv.id} could not be subscribed: ${conv.failed}`);
    }
    this.draw(conv);
    if (this.selected === conv.id) this.showSelected();
    this.askPresence(conv);
  }

  /** The user's conversations (the socket's first frame, again after every reconnect): kept, and new ones opened. */
  onConversations(list) {
    for (const item of Array.isArray(list) ? list : []) {
      const id = String(item.booking_id);
      let conv = this.convs.get(id);
      if (!conv) {
        conv = this.add(id);
        conv.listed = Number(item.unread) || 0;
      }
      if (item.title) conv.title = item.title;
      if (item.thread_id) conv.threadId = item.thread_id;
      if (item.status) conv.status = item.status;
      this.draw(conv);
      if (!conv.chat && !conv.subscribing && !conv.failed) this.subscribe(conv);
    }
    if (this.selected === null && this.convs.size) this.select(this.convs.keys().next().value);
  }

  select(id) {
    const conv = this.convs.get(id);
    if (!conv) return;
    const previous = this.selected;
    this.selected = id;
    if (this.shownCount(conv)) this.markRead(conv, this.lastMessage(conv));
    conv.unseen.clear();
    conv.listed = 0;
    if (conv.loaded) conv.shown = true;
    if (previous !== null && this.convs.has(previous)) this.draw(this.convs.get(previous));
    this.draw(conv);
    this.showSelected();
    if (conv.failed && !conv.subscribing) this.subscribe(conv); // a click tries again
    this.askPresence(conv);
  }

  /** The thread, its presence and its booking panel, for the selected conversation. */
  showSelected() {
    const conv = this.convs.get(this.selected);
    if (!conv) return;
    $("thread-title").textContent = `Chat · ${conv.title}`;
    const entries = [...conv.messages.values()].sort((a, b) => a.data.id - b.data.id);
    $("messages").replaceChildren(...entries.map((entry) => entry.el));
    scrollToEnd();
    this.showPresence(conv);
    $("booking-id").textContent = conv.id;
    if (conv.status) showStatus(conv.status);
    else {
      $("booking-status").textContent = "–";
      delete $("booking-status").dataset.status;
    }
    this.setControls(this.usable);
  }

  setControls(usable) {
    this.usable = usable;
    const on = usable && this.selected !== null;
    $("message").disabled = !on;
    $("send").disabled = !on;
    document.querySelectorAll(".actions button").forEach((b) => { b.disabled = !on; });
  }

  // -- frames ------------------------------------------------------------------------------------

  onFrame(frame) {
    logFrame("←", frame.booking_id ? `chat ${frame.booking_id}` : "user", frame);
    if (frame.type === "conversations") {
      this.onConversations(frame.conversations);
      return;
    }
    if (frame.type === "subscribed" || frame.type === "unsubscribed") return; // the module's answers
    const id = this.bookingOf(frame);
    const conv = id === undefined ? undefined : this.convs.get(id);
    if (!conv) {
      // A message in a booking of this user that the page has not opened (it reached the
      // user's socket as a participant): open it; its history brings the message.
      if (frame.type === "message" && id !== undefined) this.open(id);
      else if (typeof frame.message === "string") showError(frame.message);
      return;
    }
    switch (frame.type) {
      case "history":
        this.onHistory(conv, frame);
        return;
      case "receipt":
        this.onReceipt(conv, frame);
        return;
      case "message":
        if (!frame.message || typeof frame.message !== "object") return;
        {
          const key = messageKey(frame.message);
          conv.received.set(key, (conv.received.get(key) || 0) + 1);
        }
        this.addMessage(conv, frame.message, true);
        this.draw(conv);
        return;
      case "reaction": {
        const entry = conv.byId.get(frame.message_id);
        if (entry) this.addMessage(conv, { ...entry.data, reactions: frame.reactions }, false);
        return;
      }
      case "presence":
        if (Array.isArray(frame.users)) this.setPresence(conv, frame.users);
        return;
      case "presence_changed":
        if (frame.online) conv.online.add(frame.user_id);
        else conv.online.delete(frame.user_id);
        this.setPresence(conv, [...conv.online]);
        return;
      case "booking":
        this.setStatus(conv, frame.booking?.status);
        return;
      case "booking_status":
        this.setStatus(conv, frame.status);
        return;
      default:
        if (typeof frame.message === "string") showError(`Booking ${conv.id}: ${frame.message}`);
    }
  }

  /** A frame's booking: its booking_id, else the booking whose thread it names (a reply to `read`). */
  bookingOf(frame) {
    if (frame.booking_id !== undefined && frame.booking_id !== null) return String(frame.booking_id);
    if (typeof frame.thread_id !== "string") return undefined;
    for (const conv of this.convs.values()) if (conv.threadId === frame.thread_id) return conv.id;
    return undefined;
  }

  onError(frame) {
    const id = frame.booking_id === undefined ? undefined : String(frame.booking_id);
    const conv = id === undefined ? undefined : this.convs.get(id);
    if (conv) {
      // A subscription that could not be restored after a reconnect is no longer live.
      for (const key of ["chat", "watch"]) {
        const sub = conv[key];
        if (sub && !["subscribed", "resubscribing"].includes(sub.state)) conv[key] = null;
      }
      if (!conv.chat || !conv.watch) conv.failed = `${frame.code}: ${frame.message}`;
      this.draw(conv);
    }
    onError("chat", frame, conv ? `Booking ${conv.id}: ` : "");
  }

  onHistory(conv, frame) {
    if (frame.thread) {
      conv.title = frame.thread.title || conv.title;
      conv.threadId = frame.thread.id || conv.threadId;
    }
    const messages = Array.isArray(frame.messages) ? frame.messages : [];
    conv.histories += 1;
    if (!conv.loaded) {
      // The first: what the backend has (its receipt counts what was unread); a message that
      // came live a moment before it stays.
      conv.loaded = true;
      conv.shown = this.selected === conv.id;
      for (const message of messages) this.addMessage(conv, message, false);
    } else if (frame.since !== undefined && frame.since !== null) {
      // Subscribed again with a cursor: what was missed, each new one counted.
      for (const message of messages) this.addMessage(conv, message, true);
    } else {
      // A whole history in place of what was shown (the backend started over): new ones count,
      // and what is no longer there no longer does.
      const before = conv.messages;
      conv.messages = new Map();
      conv.byId = new Map();
      for (const key of [...conv.unseen]) if (!messages.some((m) => messageKey(m) === key)) conv.unseen.delete(key);
      for (const message of messages) {
        const key = messageKey(message);
        if (before.has(key)) {
          conv.messages.set(key, before.get(key));
          conv.byId.set(message.id, before.get(key));
        }
        this.addMessage(conv, message, !before.has(key));
      }
    }
    this.draw(conv);
    if (this.selected === conv.id) this.showSelected();
    this.askPresence(conv); // again after every subscribe: who is there now
  }

  onReceipt(conv, frame) {
    if (!("unread" in frame)) {
      conv.lastRead = frame.last_read_message_id; // the answer to a `read`
      return;
    }
    if (conv.receipted) return; // after a reconnect the page counts what its history brought
    conv.receipted = true;
    if (!conv.shown) {
      // The backend counts the messages from others after the last one read: the last ones.
      const count = Number(frame.unread) || 0;
      const fromOthers = [...conv.messages.values()]
        .map((entry) => entry.data)
        .filter((message) => message.user_id !== this.user && !conv.unseen.has(messageKey(message)))
        .sort((x, y) => x.id - y.id);
      for (const message of count ? fromOthers.slice(-count) : []) conv.unseen.add(messageKey(message));
    }
    this.draw(conv);
  }

  /** Show (or update) a message; a new one from someone else is read when shown, else unread. */
  addMessage(conv, message, count) {
    const key = messageKey(message);
    let entry = conv.messages.get(key);
    const fresh = !entry;
    if (fresh) {
      entry = { data: message, el: document.createElement("li") };
      conv.messages.set(key, entry);
    }
    entry.data = message;
    conv.byId.set(message.id, entry);
    drawMessage(entry.el, message, this.user, (emoji) =>
      this.sendTo(conv, { type: "reaction", emoji, message_id: message.id }),
    );
    if (!fresh) return;
    if (this.selected === conv.id) {
      $("messages").append(entry.el);
      scrollToEnd();
    }
    if (count && message.user_id !== this.user) {
      if (this.selected === conv.id) this.markRead(conv, message);
      else conv.unseen.add(key);
    }
  }

  lastMessage(conv) {
    let last;
    for (const { data } of conv.messages.values()) if (!last || data.id > last.id) last = data;
    return last;
  }

  /** Tell the backend that this page showed `message`, so that it is not counted unread again. */
  markRead(conv, message) {
    if (!message || !Number.isInteger(message.id) || !conv.chat) return;
    const frame = { type: "read", message_id: message.id };
    try {
      conv.chat.send(frame);
      logFrame("→", `chat ${conv.id}`, frame);
    } catch (err) {
      if (!QUIET.has(err.code)) showError(`Booking ${conv.id}: ${err.message}`);
    }
  }

  send(frame) {
    const conv = this.convs.get(this.selected);
    if (!conv) showError("no conversation is selected");
    else this.sendTo(conv, frame);
  }

  sendTo(conv, frame) {
    if (!conv.chat) {
      showError(`Booking ${conv.id} is not subscribed${conv.failed ? ` (${conv.failed})` : ""}`);
      return;
    }
    try {
      conv.chat.send(frame);
      logFrame("→", `chat ${conv.id}`, frame);
    } catch (err) {
      showError(`Booking ${conv.id}: ${err.message}`); // not subscribed, closed, or too many frames waiting
    }
  }

  // -- presence and status -----------------------------------------------------------------------

  askPresence(conv) {
    const sub = conv.chat;
    if (!sub || !["subscribed", "resubscribing"].includes(sub.state)) return;
    sub.presence().then(
      (frame) => !this.closed && this.setPresence(conv, frame.users || []),
      (err) => {
        // Lost with its socket: the next subscribe asks again.
        if (!this.closed && !QUIET.has(err.code)) showError(`Booking ${conv.id}: presence: ${err.code}: ${err.message}`);
      },
    );
  }

  setPresence(conv, users) {
    conv.online = new Set(users);
    this.draw(conv);
    if (this.selected === conv.id) this.showPresence(conv);
  }

  others(conv) {
    return [...conv.online].filter((user) => user !== this.user).sort();
  }

  showPresence(conv) {
    const others = this.others(conv);
    $("presence").textContent = others.length ? `· ${others.join(", ")} online` : "";
  }

  setStatus(conv, status) {
    if (!status) return;
    conv.status = status;
    this.draw(conv);
    if (this.selected === conv.id) showStatus(status);
  }

  // -- the list ----------------------------------------------------------------------------------

  /** What the count shows: the backend's count until the first receipt replaces it, then the page's. */
  shownCount(conv) {
    return conv.receipted ? conv.unseen.size : conv.listed + conv.unseen.size;
  }

  draw(conv) {
    if (!conv.el) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "conversation";
      button.dataset.booking = conv.id;
      const dot = document.createElement("span");
      dot.className = "dot";
      const name = document.createElement("span");
      name.className = "name";
      const title = document.createElement("span");
      title.className = "title";
      const status = document.createElement("span");
      status.className = "status";
      name.append(title, status);
      const count = document.createElement("span");
      count.className = "count";
      button.append(dot, name, count);
      button.addEventListener("click", () => this.select(conv.id));
      li.append(button);
      $("conversation-list").append(li);
      conv.el = button;
    }
    const others = this.others(conv);
    const button = conv.el;
    button.classList.toggle("selected", this.selected === conv.id);
    button.classList.toggle("failed", Boolean(conv.failed));
    button.title = conv.failed || (others.length ? `${others.join(", ")} online` : "nobody else online");
    const dot = button.querySelector(".dot");
    dot.classList.toggle("online", others.length > 0);
    button.querySelector(".title").textContent = conv.title;
    button.querySelector(".status").textContent = conv.failed
      ? "not subscribed"
      : conv.subscribing
        ? "subscribing…"
        : STATUS_LABELS[conv.status] || conv.status || "";
    const count = button.querySelector(".count");
    const shown = this.shownCount(conv);
    count.textContent = String(shown);
    count.hidden = shown === 0;
  }

  /** For the browser test and the curious: each conversation as plain data. */
  summary() {
    return {
      state: this.socket.state,
      selected: this.selected,
      conversations: [...this.convs.values()].map((conv) => ({
        id: conv.id,
        title: conv.title,
        status: conv.status,
        unread: this.shownCount(conv),
        online: this.others(conv),
        chat: conv.chat ? conv.chat.state : null,
        watch: conv.watch ? conv.watch.state : null,
        failed: conv.failed,
        histories: conv.histories,
        messages: [...conv.messages.values()].map((entry) => entry.data.body),
        received: Object.fromEntries(conv.received),
        lastRead: conv.lastRead,
      })),
    };
  }
}
