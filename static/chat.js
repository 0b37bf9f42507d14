// The tornado-chat page: log in, rooms and direct conversations, and a link to the server that survives
// bad networks and restarts without losing or repeating a message.
//
// What is pending, what to resend, the resume cursor, de-duplication by seq and unread counts live in
// chatstate.js (no DOM, tested under Node); this file draws that state and wires the page's events and the
// link (connection.js) to it.
// Text is only ever put in the page as text (dom.js): never parsed as HTML.

import { api, ApiError, NetworkError } from "./api.js";
import { ChatState, groupKey, keyOfMessage, keyOfTarget, parseKey, personKey, roomKey } from "./chatstate.js";
import { Composer } from "./composer.js";
import { backoffDelay, Link } from "./connection.js";
import { $, avatar, dayKey, dayLabel, fill, formatFull, formatTime, formatted, h, patchChildren } from "./dom.js";
import { TRANSPORT_NAMES, WEBSOCKET } from "./fallback.js";
import { applyChange, applyMemberEvent, applyRoomState, newRoom } from "./moderation.js";
import { Notifier } from "./notify.js";
import { Prefs } from "./prefs.js";
import { firstUnread, mentionsMe } from "./readstate.js";
import * as roomview from "./roomview.js";
import { SearchPanel } from "./search.js";
import { TypingState, typingText } from "./typingstate.js";

const ROOM_RULE = /^[a-z0-9_-]{1,64}$/;
const NAME_RULE = /^[A-Za-z0-9_.-]{1,32}$/;
const GROUP_GAP_MS = 5 * 60_000;
const HISTORY_PAGE = 50;
const PUMP_AGAIN_MS = 100;
const ROOMS_REFRESH_MS = 30_000;
// Pages of history fetched, at most, to reach a search result in its conversation.
const FIND_PAGES = 25;
const FIND_PAGE = 200;
const NARROW = window.matchMedia("(max-width: 720px)");

let config = {
  registration: "open",
  guests: false,
  heartbeat: { interval: 25, timeout: 10 },
  limits: { text_chars: 4000, message_bytes: 65536 },
};
/** The logged-in user's chat; null on the login screen. */
let chat = null;

/** localStorage or sessionStorage; null when the browser refuses it (then nothing survives a reload). */
function browserStorage(name) {
  try {
    return window[name];
  } catch {
    return null;
  }
}

class Chat {
  constructor(who) {
    this.me = who.username;
    this.guest = Boolean(who.guest);
    this.state = new ChatState({
      user: this.me,
      storage: browserStorage("localStorage"),
      tabStorage: browserStorage("sessionStorage"),
    });
    this.prefs = new Prefs(this.me, {
      storage: browserStorage("localStorage"),
      tabStorage: browserStorage("sessionStorage"),
    });
    this.typing = new TypingState();
    this.typingTimer = null;
    this.composer = new Composer({
      textarea: $("composer-text"),
      counter: $("composer-count"),
      sendButton: $("composer").querySelector("button[type=submit]"),
      prefs: this.prefs,
      typing: this.typing,
      sendTyping: (key) => this.send({ type: "typing", ...this.state.conversation(key).frameTarget }),
    });
    this.notifier = new Notifier({ prefs: this.prefs, open: (key) => this.openConversation(key) });
    this.search = new SearchPanel({
      send: (frame) => this.send(frame),
      keyOf: (message) => keyOfMessage(message, this.me),
      label: (key) => this.label(key),
      openAt: (key, seq) => this.openAt(key, seq),
      shown: (visible) => document.body.classList.toggle("searching", visible),
    });
    // The read position the open conversation had when it was opened: the "New messages" line follows it.
    this.lineAfter = null;
    this.rooms = new Map(); // name -> moderation.newRoom(): {name, members, online, member, names, private, topic, roles, banned}
    this.roomsNext = null; // the room list is paged: the name to ask after for the next page, or null
    this.roomsTotal = 0;
    this.online = new Set();
    this.admin = false; // a server admin (the welcome says; an `admin` frame changes it)
    this.editor = new roomview.Editor(this);
    this.actions = new Map(); // id -> what, for frames that answer with their id (roomview.js)
    this.actionCount = 0;
    this.limits = config.limits;
    this.wantOpen = null; // a room we asked to join and will open once joined
    this.pumpTimer = null;
    this.stopped = false;
    this.welcomed = false;
    this.loggingOut = false;
    this.ending = false;
    this.passwordChange = null;
    this.link = new Link(
      {
        since: () => this.state.cursor,
        frame: (frame, ordered) => this.onFrame(frame, ordered),
        up: () => this.onUp(),
        down: () => this.onDown(),
        status: () => this.renderStatus(),
        sessionEnded: (reason) => this.sessionEnded(reason),
        loginState: () => this.loginState(),
      },
      config.heartbeat,
      { websocketRetryMs: (config.fallback?.websocket_retry_s ?? 0) * 1000 },
    );
    this.timers = [
      setInterval(() => this.checkAcks(), 1000),
      setInterval(() => this.send({ type: "rooms" }), ROOMS_REFRESH_MS),
    ];
    this.onOnline = () => this.flushPending(false);
    this.onVisible = () => {
      if (!document.hidden) this.readOpen();
    };
    this.onPageHide = () => this.state.writeNow();
    window.addEventListener("online", this.onOnline);
    document.addEventListener("visibilitychange", this.onVisible);
  }

  start() {
    $("me-name").textContent = this.me;
    $("menu-name").textContent = this.me;
    $("me-avatar").replaceChildren(avatar(this.me, "small"));
    $("password-button").hidden = this.guest;
    this.state.begin();
    window.addEventListener("pagehide", this.onPageHide);
    this.renderPrefs();
    // A reload reopens this tab's conversation; a new tab, the one opened last in any tab.
    this.openConversation(this.openKey ?? this.prefs.lastOpen, { focus: false });
    this.link.start();
  }

  stop({ keepState }) {
    this.stopped = true;
    this.link.destroy();
    for (const timer of this.timers) clearInterval(timer);
    clearTimeout(this.pumpTimer);
    clearTimeout(this.typingTimer);
    this.composer.switchTo(null);
    this.search.close();
    window.removeEventListener("online", this.onOnline);
    document.removeEventListener("visibilitychange", this.onVisible);
    window.removeEventListener("pagehide", this.onPageHide);
    // Logged out by the server (password changed elsewhere, say): keep the queue for the next login.
    // Logged out on purpose: forget it.
    this.state.end({ keep: keepState });
  }

  // ------------------------------------------------------------ state

  room(name) {
    let room = this.rooms.get(name);
    if (!room) {
      room = newRoom(name);
      this.rooms.set(name, room);
    }
    return room;
  }

  get openKey() {
    return this.state.openKey;
  }

  /** The conversation on screen, or null. */
  get open() {
    return this.openKey ? this.state.conversation(this.openKey) : null;
  }

  onlineCount(room) {
    if (!room.names) return room.online;
    let count = 0;
    for (const name of room.names) if (name === this.me || this.online.has(name)) count++;
    return count;
  }

  /** Whether to show `name` as online: unknown (so not) for everyone while this page is not connected. */
  isOnline(name) {
    if (!this.link.isUp || !navigator.onLine) return false;
    return name === this.me || this.online.has(name);
  }

  canSend() {
    return this.link.isUp && !this.state.replaying && navigator.onLine;
  }

  send(frame) {
    return this.link.send(frame);
  }

  notice(text) {
    toast(text);
  }

  messageMember(name) {
    $("members").open = false;
    this.startConversation(name);
  }

  // ------------------------------------------------------------ frames

  /** `ordered`: false for a POST's replies over HTTP, which may overtake the stream (chatstate.settleByAck). */
  onFrame(frame, ordered = true) {
    switch (frame.type) {
      case "welcome":
        return this.onWelcome(frame);
      case "message":
        return this.onMessage(frame, !this.state.replaying);
      case "ack":
        return this.onAck(frame, ordered);
      case "resumed":
        return this.onResumed(frame);
      case "joined":
      case "left":
        return this.onMembership(frame);
      case "member":
        return this.onMember(frame);
      case "presence":
        if (frame.status === "online") this.online.add(frame.user);
        else this.online.delete(frame.user);
        return this.renderPeople();
      case "rooms":
        return this.onRooms(frame);
      case "room":
        return this.onRoomState(frame);
      case "removed":
        return this.onRemoved(frame);
      case "edited":
      case "deleted":
        return this.onChange(frame);
      case "admin":
        this.admin = Boolean(frame.admin);
        return this.renderAll();
      case "read":
        this.state.readFrame(frame);
        return this.renderSidebar();
      case "typing":
        return this.onTyping(frame);
      case "search":
        return this.search.answered(frame);
      case "error":
        return this.onError(frame);
      default:
        return undefined; // pong, history (we page history over HTTP), and frames from a newer server
    }
  }

  onWelcome(welcome) {
    if (welcome.user !== this.me) {
      // Another tab logged in as someone else: the shared cookie is theirs now.
      window.location.reload();
      return;
    }
    this.limits = welcome.limits ?? this.limits;
    this.composer.setLimit(this.limits.text_chars);
    this.state.welcome(welcome, this.link.sinceUsed);
    this.welcomed = true;
    this.search.relinked(); // a search asked on the old session is asked again
    this.admin = Boolean(welcome.admin);
    const member = new Set(welcome.rooms);
    for (const room of this.rooms.values()) room.member = member.has(room.name);
    for (const name of member) this.room(name).member = true;
    this.online = new Set(welcome.online);
    this.send({ type: "rooms" });
    const open = this.open;
    if (open?.kind === "room") {
      if (member.has(open.name)) this.send({ type: "join", room: open.name }); // answers with the member list
      else if (this.wantOpen !== open.name) this.openConversation(null);
    }
    if (this.open && !this.open.loaded) this.loadHistory(this.open);
    this.renderAll();
    this.readOpen();
  }

  onUp() {
    if (!this.state.replaying) this.flushPending(true);
    this.renderMessages();
  }

  onDown() {
    this.state.linkDown();
    this.renderAll();
  }

  onResumed(frame) {
    // Cut short: what we hold may have a gap, so the state forgot it; start from history again.
    if (this.state.resumed(frame) && this.open) this.loadHistory(this.open);
    this.flushPending(true);
    this.renderAll();
  }

  onMessage(message, live) {
    const outcome = this.state.receive(message, { visible: !document.hidden });
    if (!outcome) return;
    const { key, own, added } = outcome;
    if (this.typing.stopped(key, message.from)) this.renderTyping();
    if (!added) {
      // Shown already; our own pending copy may just have been settled by it.
      if (key === this.openKey) this.renderMessages();
      return;
    }
    if (!own && live) {
      this.online.add(message.from); // they just sent it
      this.announce(message);
      if (!(key === this.openKey && !document.hidden)) {
        const direct = !message.room;
        this.notifier.message({ key, title: this.title(key, message), message, direct, mentioned: mentionsMe(message, this.me) });
      }
    }
    if (key === this.openKey) {
      this.renderMessages({ arrived: true, own });
      this.readOpen();
    }
    this.renderSidebar();
  }

  onAck(ack, ordered) {
    const settled = this.state.settleByAck(ack, { ordered });
    if (settled && settled.key === this.openKey) this.renderMessages({ arrived: settled.added, own: true });
  }

  onMembership(frame) {
    const room = this.room(frame.room);
    if (frame.type === "joined") {
      applyRoomState(room, frame, this.me); // members, roles, topic, kind
    } else {
      room.member = false;
      room.members = frame.members.length;
      room.names = new Set(frame.members);
      room.online = frame.online.length;
    }
    for (const name of frame.online) if (name !== this.me) this.online.add(name);
    if (roomview.actionAnswered(this, frame)?.kind === "create") {
      roomview.roomCreated(this, frame);
    } else if (frame.type === "joined" && this.wantOpen === frame.room) {
      this.wantOpen = null;
      this.openConversation(roomKey(frame.room));
    } else if (frame.type === "left" && this.openKey === roomKey(frame.room)) {
      this.openConversation(null);
    }
    if (frame.type === "left") this.state.reads.forget(roomKey(frame.room));
    this.send({ type: "rooms" });
    this.renderAll();
  }

  onMember(frame) {
    const room = this.room(frame.room);
    if (applyMemberEvent(room, frame) && frame.event === "joined") this.online.add(frame.user); // joining takes an open session
    this.renderSidebar();
    this.renderHeader();
  }

  onRooms(frame) {
    // A page of the rooms we may see, in name order. A room that falls within the page but is not on it is
    // gone for us: it emptied (a room goes with its last member), or it is a private room we are no longer in.
    const listed = new Set(frame.rooms.map((entry) => entry.room));
    const from = frame.after ?? null;
    const upTo = frame.next ?? null;
    for (const name of this.rooms.keys()) {
      const inRange = (from === null || name > from) && (upTo === null || name <= upTo);
      if (!inRange || listed.has(name)) continue;
      this.rooms.delete(name);
      this.state.reads.forget(roomKey(name));
    }
    for (const entry of frame.rooms) {
      const room = this.room(entry.room);
      room.members = entry.members;
      room.online = entry.online;
      room.member = entry.member;
      room.private = Boolean(entry.private);
      room.topic = entry.topic ?? "";
      // Counts only for our own rooms: a room we left or were removed from has nothing unread for us.
      if (entry.member) this.state.reads.apply(roomKey(entry.room), entry);
      else this.state.reads.forget(roomKey(entry.room));
    }
    if (from === null || from === this.roomsNext) this.roomsNext = upTo;
    this.roomsTotal = frame.total ?? this.rooms.size;
    this.renderSidebar();
    this.renderHeader();
  }

  /** A room's new state (roles, topic, bans, members): the answer to our action, or news of someone's. */
  onRoomState(frame) {
    roomview.actionAnswered(this, frame);
    applyRoomState(this.room(frame.room), frame, this.me);
    this.renderSidebar();
    this.renderHeader();
  }

  /** We were kicked or banned: the room goes, and a private one is forgotten altogether. */
  onRemoved(frame) {
    const room = this.room(frame.room);
    room.member = false;
    room.names = null;
    if (room.private) this.rooms.delete(frame.room);
    this.state.reads.forget(roomKey(frame.room)); // nothing there is unread for us any more
    if (this.openKey === roomKey(frame.room)) this.openConversation(null);
    toast(`${frame.by} ${frame.reason === "banned" ? "banned you from" : "removed you from"} #${frame.room}.`);
    this.send({ type: "rooms" });
    this.renderAll();
  }

  /** A message was edited or deleted (ours: the answer to our edit or delete). */
  onChange(frame) {
    roomview.actionAnswered(this, frame);
    const outcome = applyChange(this.state, frame);
    if (!outcome?.changed) return;
    if (outcome.key === this.openKey) this.renderMessages();
    this.renderSidebar(); // a mention edited in or out of an unread message
  }

  moreRooms() {
    if (this.roomsNext !== null) this.send({ type: "rooms", after: this.roomsNext });
  }

  onError(error) {
    if (roomview.actionFailed(this, error)) return;
    if (this.search.refused(error)) return;
    const item = this.state.settleByError(error);
    if (item) {
      if (item.key === this.openKey) this.renderMessages();
      return;
    }
    if (error.code === "internal" && this.state.replaying) {
      // The replay failed: ask again in a moment (no `resumed` is coming for this one).
      setTimeout(() => this.send({ type: "resume", since: this.state.cursor }), 2000);
      return;
    }
    const joinRefused = ["not_member", "unknown_room", "banned", "too_many_rooms"].includes(error.code) && this.wantOpen;
    if (error.code === "bad_room" || error.code === "too_many_rooms" || joinRefused) {
      if (joinRefused && !this.rooms.get(this.wantOpen)?.member) this.rooms.delete(this.wantOpen);
      this.wantOpen = null;
      $("join-error").textContent = error.message;
      return;
    }
    toast(error.code === "rate_limited" ? "Slow down a little: the server is dropping frames." : error.message);
  }

  // ------------------------------------------------------------ sending

  compose(text) {
    const conversation = this.open;
    if (!conversation || !text.trim()) return false;
    if (conversation.kind === "room" && this.welcomed && !this.room(conversation.name).member) {
      toast(`Join #${conversation.name} to write here.`);
      return false;
    }
    if (this.composer.measure().over) {
      toast(`That message is too long: at most ${this.limits.text_chars.toLocaleString()} characters.`);
      return false;
    }
    this.state.enqueue(conversation.key, text); // stored before anything else: a reload cannot lose it
    this.flushPending(false);
    this.renderMessages({ arrived: true, own: true });
    return true;
  }

  /** Send what waits for the link; `includeFailed`: also what failed (after a reconnect). */
  flushPending(includeFailed) {
    if (!this.canSend()) return;
    if (includeFailed) roomview.resendChanges(this); // after a reconnect
    if (this.state.queueUnsent(includeFailed)) this.pump();
  }

  /** Send what is in the outbox, paced so that a long queue after an outage stays under the rate limit. */
  pump() {
    clearTimeout(this.pumpTimer);
    this.pumpTimer = null;
    const { changed, more } = this.state.sendQueued((frame) => this.send(frame));
    if (more) this.pumpTimer = setTimeout(() => this.pump(), PUMP_AGAIN_MS);
    if (changed) this.renderMessages();
  }

  /** How long a sent message may wait for its ack, while connected, before it shows as failed. */
  get ackTimeoutMs() {
    const { interval, timeout } = this.link.heartbeat;
    return Math.min(10_000, Math.max(3_000, (interval + timeout) * 1000));
  }

  checkAcks() {
    if (!this.canSend()) return;
    if (this.state.expireUnacked(this.ackTimeoutMs)) this.renderMessages();
  }

  retry(id) {
    if (!this.state.retry(id)) return;
    this.flushPending(false);
    this.renderMessages();
  }

  discard(id) {
    this.state.discard(id);
    this.renderMessages();
  }

  // ------------------------------------------------------------ conversations

  openConversation(key, { focus = true } = {}) {
    if (key !== null && parseKey(key).kind === "room" && !this.room(parseKey(key).name).member && this.link.isUp) {
      key = null;
    }
    this.state.select(key);
    this.editor.follow(key); // an edit belongs to the conversation it started in: it ends first
    this.composer.switchTo(key);
    if (key !== null) this.prefs.opened(key);
    this.lineAfter = key === null ? null : this.state.reads.position(key);
    document.body.classList.toggle("conversation-open", key !== null);
    if (this.search.open) this.search.close();
    $("jump").hidden = true;
    if (key !== null) {
      const conversation = this.state.conversation(key);
      if (!conversation.loaded && !conversation.loading) this.loadHistory(conversation);
      const room = conversation.kind === "room" ? this.room(conversation.name) : null;
      if (room && room.member && !room.names) this.send({ type: "join", room: room.name });
    }
    this.renderAll({ toBottom: true });
    this.renderTyping();
    this.readOpen();
    if (focus && key !== null && !NARROW.matches) $("composer-text").focus();
  }

  joinRoom(raw) {
    const name = raw.trim().replace(/^#/, "").toLowerCase().replace(/\s+/g, "-");
    $("join-error").textContent = "";
    if (!ROOM_RULE.test(name)) {
      $("join-error").textContent = "Room names are 1-64 characters: a-z, 0-9, - and _.";
      return false;
    }
    if (this.rooms.get(name)?.member) {
      this.openConversation(roomKey(name));
      return true;
    }
    if (!this.send({ type: "join", room: name })) {
      $("join-error").textContent = "Not connected: try again in a moment.";
      return false;
    }
    this.wantOpen = name;
    return true;
  }

  leaveRoom(name) {
    if (!this.send({ type: "leave", room: name })) toast("Not connected: try again in a moment.");
  }

  async startConversation(raw) {
    const names = [...new Set(raw.split(",").map((part) => part.trim().replace(/^@/, "")).filter(Boolean))];
    if (names.length > 1) return this.startGroup(names.filter((name) => name !== this.me));
    const name = names[0] ?? "";
    const error = $("person-error");
    error.textContent = "";
    if (!NAME_RULE.test(name)) {
      error.textContent = "Names are 1-32 characters: letters, digits, '.', '_' and '-'.";
      return false;
    }
    const key = personKey(name);
    if (!this.state.people.has(name)) {
      // Ask for the conversation's history first: it also tells whether the person exists.
      try {
        const page = await api.history({ with: name }, null, HISTORY_PAGE);
        this.state.addHistoryPage(this.state.conversation(key), page);
      } catch (problem) {
        if (problem instanceof ApiError && problem.status === 404) error.textContent = `Nobody is called “${name}” here.`;
        else if (problem instanceof ApiError && problem.status === 401) this.sessionEnded("expired");
        else error.textContent = "Could not reach the server: try again in a moment.";
        return false;
      }
      this.state.people.add(name);
    }
    this.openConversation(key);
    return true;
  }

  async loadHistory(conversation, older = false, size = HISTORY_PAGE) {
    const request = conversation.beginPage(older);
    if (!request) return;
    this.renderHistoryTop();
    let outcome = older ? "prepend" : "bottom";
    try {
      const page = await api.history(conversation.target, request.before, size);
      if (this.stopped) return;
      this.state.addHistoryPage(conversation, page);
    } catch (problem) {
      if (this.stopped) return;
      outcome = "keep";
      if (problem instanceof ApiError && problem.status === 401) {
        this.sessionEnded("expired");
      } else if (problem instanceof ApiError && (problem.status === 403 || problem.status === 404)) {
        conversation.pageRefused(problem.message);
      } else if (problem instanceof ApiError && problem.status === 429) {
        // Another tab's history request is running for this login: ask again when it says.
        setTimeout(() => this.loadHistory(conversation, older), (problem.retryAfterS || 1) * 1000);
      } else {
        conversation.pageFailed("Could not load older messages.");
      }
    } finally {
      conversation.endPage();
    }
    if (conversation.key === this.openKey) {
      this.renderMessages({ history: outcome });
      this.readOpen();
    }
  }

  /** The reader sees the open conversation (and the tab): tell the server how far they have read. */
  readOpen() {
    const key = this.openKey;
    if (key === null || document.hidden || this.search.open) return;
    const read = this.state.markRead(key);
    if (read === null) return;
    this.send({ type: "read", ...this.state.conversation(key).frameTarget, seq: read.seq });
    this.renderSidebar();
  }

  onTyping(frame) {
    if (frame.from === this.me) return;
    this.typing.heard(keyOfMessage(frame, this.me), frame.from);
    this.renderTyping();
  }

  /** "alice is typing…" under the open conversation, until it runs out. */
  renderTyping() {
    clearTimeout(this.typingTimer);
    $("typing").textContent = this.openKey === null ? "" : typingText(this.typing.who(this.openKey));
    const next = this.typing.nextExpiry();
    if (next !== null) this.typingTimer = setTimeout(() => this.renderTyping(), next + 50);
  }

  /** How the sidebar names a conversation: "#room", "bob", "bob, carol". */
  label(key) {
    const { kind, name, people } = parseKey(key);
    if (kind === "room") return `#${name}`;
    return kind === "group" ? people.join(", ") : name;
  }

  /** A notification's title for a message in `key`. */
  title(key, message) {
    const { kind } = parseKey(key);
    if (kind === "dm") return message.from;
    return `${message.from} in ${this.label(key)}`;
  }

  /** Open `key` and show the message `seq` there, loading history back to it (a search result). */
  async openAt(key, seq) {
    if (parseKey(key).kind === "dm") this.state.people.add(parseKey(key).name);
    if (parseKey(key).kind === "group") this.state.groups.add(key);
    this.openConversation(key);
    const conversation = this.state.conversation(key);
    for (let page = 0; page < FIND_PAGES && !conversation.messages.has(seq); page++) {
      if (conversation.loading) await new Promise((resolve) => setTimeout(resolve, 50));
      else if (!conversation.loaded) await this.loadHistory(conversation, false, FIND_PAGE);
      else if (conversation.more === true) await this.loadHistory(conversation, true, FIND_PAGE);
      else break;
      if (this.openKey !== key) return;
    }
    const item = $("messages").querySelector(`li[data-seq="${seq}"]`);
    if (!item) {
      toast("That message is too far back to show here.");
      return;
    }
    for (const old of $("messages").querySelectorAll("li.found")) old.classList.remove("found");
    item.classList.add("found");
    item.scrollIntoView({ block: "center" });
  }

  /** Start (or open) a group conversation with `names` (everyone but this user). */
  async startGroup(names) {
    const error = $("person-error");
    error.textContent = "";
    const bad = names.find((name) => !NAME_RULE.test(name));
    if (bad !== undefined || names.length < 2 || names.length > 9) {
      error.textContent = bad !== undefined ? `“${bad}” is not a name.` : "A group has 3 to 10 people, you included.";
      return false;
    }
    const key = groupKey(names);
    if (!this.state.groups.has(key)) {
      try {
        const page = await api.history({ with: names.join(",") }, null, HISTORY_PAGE);
        this.state.addHistoryPage(this.state.conversation(key), page);
      } catch (problem) {
        error.textContent = problem instanceof ApiError ? problem.message : "Could not reach the server: try again in a moment.";
        return false;
      }
      this.state.groups.add(key);
    }
    this.openConversation(key);
    return true;
  }

  /** The account menu's switches: notifications and sound. */
  renderPrefs() {
    const permission = this.notifier.permission;
    const button = $("notify-button");
    button.hidden = permission === "unsupported";
    button.disabled = permission !== "default";
    button.textContent =
      permission === "granted"
        ? "Desktop notifications are on"
        : permission === "denied"
          ? "Desktop notifications are blocked in this browser"
          : "Turn on desktop notifications";
    $("sound-button").setAttribute("aria-pressed", String(this.prefs.sound));
  }

  announce(message) {
    const where = message.room ? ` in #${message.room}` : "";
    const region = $("announcer");
    region.append(h("p", {}, `${message.from}${where}: ${message.text}`));
    while (region.childElementCount > 5) region.firstElementChild.remove();
  }

  // ------------------------------------------------------------ account

  /**
   * "in": the server answered and we are logged in; "out": the login is over; "unknown": the server did not
   * answer (no network, or a proxy's 502/503/504 while it restarts).
   */
  async loginState() {
    try {
      const who = await api.me();
      return who.username === this.me ? "in" : "out";
    } catch (problem) {
      if (!(problem instanceof ApiError) || problem.status >= 500) return "unknown";
      return problem.status === 401 ? "out" : "in";
    }
  }

  /** The server ended our login session (1008), or the token stopped working. */
  async sessionEnded(reason) {
    if (this.ending || this.loggingOut || this.stopped) return;
    this.ending = true;
    // Changing the password ends every login session, this tab's too; the answer brings a new cookie.
    if (this.passwordChange) await this.passwordChange.catch(() => null);
    let who = null;
    let unreachable = false;
    try {
      who = await api.me();
    } catch (problem) {
      unreachable = !(problem instanceof ApiError && problem.status === 401);
    }
    this.ending = false;
    if (this.stopped) return;
    if (who && who.username !== this.me) {
      window.location.reload();
      return;
    }
    if (who || unreachable) {
      this.link.start(); // still logged in (a new cookie), or we cannot tell yet: carry on
      return;
    }
    const notice =
      reason === "account removed"
        ? "Your account was removed."
        : reason === "expired"
          ? "Your login has expired: please log in again."
          : "You were logged out.";
    leaveChat({ keepState: true, notice });
  }

  async logout() {
    this.loggingOut = true;
    try {
      await api.logout();
    } catch (problem) {
      if (!(problem instanceof ApiError)) {
        this.loggingOut = false;
        toast("Could not reach the server to log out: try again.");
        return;
      }
      // 401: the login was over already
    }
    leaveChat({ keepState: false, notice: "" });
  }

  async changePassword(current, next) {
    const request = api.changePassword(current, next);
    this.passwordChange = request;
    try {
      await request;
    } finally {
      this.passwordChange = null;
    }
  }

  // ------------------------------------------------------------ rendering

  renderAll(options = {}) {
    this.renderStatus();
    this.renderSidebar();
    this.renderHeader();
    this.renderMessages(options.toBottom ? { history: "bottom" } : {});
  }

  renderStatus() {
    const link = this.link;
    let state;
    let text;
    let detail = "";
    if (!navigator.onLine) {
      state = "offline";
      text = "Offline";
      detail = " · waiting for the network";
    } else if (link.state === "up") {
      state = "connected";
      text = "Connected";
      if (link.kind !== WEBSOCKET) detail = ` · via ${TRANSPORT_NAMES[link.kind]}`;
    } else if (link.state === "waiting") {
      state = "reconnecting";
      text = "Reconnecting";
      detail = ` in ${Math.max(1, Math.ceil((link.retryAt - Date.now()) / 1000))} s`;
    } else {
      state = link.everUp ? "reconnecting" : "connecting";
      text = link.everUp ? "Reconnecting…" : "Connecting…";
    }
    const element = $("connection");
    element.dataset.state = state;
    element.dataset.link = link.state;
    element.dataset.transport = link.kind;
    element.title = `Connection to the server: ${TRANSPORT_NAMES[link.kind]}`;
    if ($("connection-text").textContent !== text) $("connection-text").textContent = text;
    $("connection-detail").textContent = detail;
    $("retry-now").hidden = !(link.state === "waiting" && navigator.onLine);
    const stateChanged = this.shownState !== state;
    this.shownState = state;
    if (stateChanged) {
      this.renderPeople();
      this.renderMessages();
    }
  }

  renderSidebar() {
    this.renderRooms();
    this.renderPeople();
    this.renderTitle();
  }

  renderTitle() {
    const total = this.state.totalUnread((key) => this.prefs.isMuted(key));
    document.title = total ? `(${total}) tornado-chat` : "tornado-chat";
    this.notifier.badge(total);
  }

  /** The badges of a sidebar entry: unread count (grey when muted), "@" when it mentions the user. */
  badges(key) {
    const unread = this.state.unreadIn(key);
    const mentions = this.state.reads.mentionsIn(key);
    const muted = this.prefs.isMuted(key);
    const label = [
      unread ? plural(unread, "unread message") : "",
      mentions ? plural(mentions, "mention") : "",
      muted ? "muted" : "",
    ].filter(Boolean);
    const nodes = [
      mentions ? h("span", { class: "badge mention-badge" }, "@") : null,
      unread ? h("span", { class: muted ? "badge muted" : "badge" }, unread > 999 ? "999+" : String(unread)) : null,
    ];
    return { sig: `${unread}|${mentions}|${muted}`, label: label.length ? `, ${label.join(", ")}` : "", nodes };
  }

  renderRooms() {
    const mine = [...this.rooms.values()].filter((r) => r.member).sort((a, b) => a.name.localeCompare(b.name));
    patchList(
      $("room-list"),
      mine.map((room) => {
        const key = roomKey(room.name);
        const badges = this.badges(key);
        const active = key === this.openKey;
        const fillItem = (item) => {
          const button = item.firstElementChild;
          button.setAttribute("aria-current", active ? "true" : "false");
          button.setAttribute("aria-label", `#${room.name}${roomview.privateLabel(room)}, ${plural(room.members, "member")}${badges.label}`);
          fill(
            button,
            room.private ? h("span", { class: "hash lock", "aria-hidden": "true" }) : h("span", { class: "hash", "aria-hidden": "true" }, "#"),
            h("span", { class: "conv-name" }, room.name),
          );
          fill(item.lastElementChild, h("span", { class: "member-count" }, String(room.members)), badges.nodes);
        };
        return { key, sig: `${room.members}|${badges.sig}|${active}|${room.private}`, create: () => this.conversationItem(key, fillItem), update: fillItem };
      }),
      this.welcomed ? "No rooms yet: join one below." : "",
    );
    const others = [...this.rooms.values()]
      .filter((r) => !r.member)
      .sort((a, b) => b.members - a.members || a.name.localeCompare(b.name));
    const otherCount = Math.max(others.length, this.roomsTotal - mine.length);
    $("browse-count").textContent = otherCount ? `(${otherCount})` : "";
    $("more-rooms").hidden = this.roomsNext === null;
    patchList(
      $("other-rooms"),
      others.map((room) => ({
        key: room.name,
        sig: `${room.members}`,
        create: () =>
          h(
            "li",
            { dataset: { room: room.name } },
            h("span", { class: "room-name" }, `#${room.name}`),
            h("span", { class: "muted" }, plural(room.members, "member")),
            h(
              "button",
              { type: "button", class: "small", "aria-label": `Join #${room.name}`, onclick: () => this.joinRoom(room.name) },
              "Join",
            ),
          ),
      })),
      "No other rooms.",
    );
  }

  /** A sidebar entry: a button that opens the conversation, filled in by `fill`. */
  conversationItem(key, fillItem) {
    const item = h("li", { dataset: { key }, class: "conv-entry" });
    item.append(h("button", { type: "button", class: "conv-item", onclick: () => this.openConversation(key) }));
    // Counts and badges sit over the button, outside it: its accessible name says them in words, and its
    // visible text must be part of that name.
    item.append(h("span", { class: "conv-extra", "aria-hidden": "true" }));
    fillItem(item);
    return item;
  }

  renderPeople() {
    const keys = [...[...this.state.people].map(personKey), ...this.state.groups].sort((a, b) =>
      this.label(a).localeCompare(this.label(b)),
    );
    patchList(
      $("people-list"),
      keys.map((key) => {
        const { kind, name, people } = parseKey(key);
        const badges = this.badges(key);
        const online = kind === "dm" ? this.isOnline(name) : people.some((person) => this.isOnline(person));
        const active = key === this.openKey;
        const fillItem = (item) => {
          const button = item.firstElementChild;
          const who = name === this.me ? `${name} (you)` : this.label(key);
          const status = kind === "group" ? `group of ${people.length + 1}` : online ? "online" : "offline";
          button.setAttribute("aria-current", active ? "true" : "false");
          button.setAttribute("aria-label", `${who}, ${status}${badges.label}`);
          fill(
            button,
            h("span", { class: `presence ${online ? "online" : "offline"}`, "aria-hidden": "true" }),
            kind === "group" ? h("span", { class: "avatar small group-avatar", "aria-hidden": "true" }, String(people.length + 1)) : avatar(name, "small"),
            h("span", { class: "conv-name", dir: "auto" }, who),
          );
          fill(item.lastElementChild, badges.nodes);
        };
        return { key, sig: `${badges.sig}|${online}|${active}`, create: () => this.conversationItem(key, fillItem), update: fillItem };
      }),
      this.welcomed ? "No conversations yet." : "",
    );
    this.renderHeader();
    this.renderTitle();
  }

  renderHeader() {
    const conversation = this.open;
    const title = $("conv-title");
    const subtitle = $("conv-subtitle");
    const members = $("members");
    $("empty-state").hidden = conversation !== null;
    $("scroller").hidden = conversation === null;
    $("composer").hidden = conversation === null;
    members.hidden = true;
    const topic = conversation?.kind === "room" ? this.room(conversation.name).topic : "";
    $("conv-topic").hidden = !topic;
    $("conv-topic").textContent = topic;
    const mute = $("mute-button");
    mute.hidden = conversation === null;
    if (conversation?.kind !== "room") patchList($("member-list"), [], ""); // a room's list: stale elsewhere
    if (!conversation) {
      title.textContent = "Welcome";
      subtitle.replaceChildren(`Logged in as ${this.me}`);
      // Look, do not create: a room that does not exist must not appear in the lists.
      $("join-general").hidden = Boolean(this.rooms.get("general")?.member);
      return;
    }
    const muted = this.prefs.isMuted(conversation.key);
    mute.setAttribute("aria-pressed", String(muted));
    mute.textContent = muted ? "Muted" : "Mute";
    mute.title = muted ? "Unmute: notify me again" : "Mute: no notifications or sounds from here";
    const textarea = $("composer-text");
    if (conversation.kind === "room") {
      const room = this.room(conversation.name);
      title.textContent = `#${room.name}`;
      subtitle.replaceChildren(`${plural(room.members, "member")} · ${this.onlineCount(room)} online`);
      $("leave-button").textContent = `Leave #${room.name}`;
      textarea.placeholder = `Message #${room.name}`;
      members.hidden = !room.member;
      const names = [...(room.names ?? [])].sort(
        (a, b) => Number(this.isOnline(b)) - Number(this.isOnline(a)) || a.localeCompare(b),
      );
      patchList(
        $("member-list"),
        names.map((name) => roomview.memberEntry(this, room, name, this.isOnline(name))),
        "Loading…",
      );
      roomview.renderRoomTools(this, room);
    } else if (conversation.kind === "group") {
      const people = parseKey(conversation.key).people;
      title.textContent = people.join(", ");
      const online = people.filter((person) => this.isOnline(person)).length;
      subtitle.replaceChildren(`${people.length + 1} people, you included · ${online} online`);
      textarea.placeholder = `Message ${people.join(", ")}`;
    } else {
      const online = this.isOnline(conversation.name);
      title.textContent = conversation.name === this.me ? `${conversation.name} (you)` : conversation.name;
      subtitle.replaceChildren(
        h("span", { class: `presence ${online ? "online" : "offline"}`, "aria-hidden": "true" }),
        online ? "Online" : "Offline",
      );
      textarea.placeholder = `Message ${conversation.name}`;
    }
  }

  renderHistoryTop() {
    const conversation = this.open;
    const older = $("load-older");
    const start = $("history-start");
    if (!conversation) return;
    older.hidden = !(conversation.more === true || conversation.loading || conversation.error);
    older.disabled = conversation.loading;
    older.textContent = conversation.loading
      ? "Loading…"
      : conversation.error && conversation.more !== false
        ? `${conversation.error} Try again`
        : "Load older messages";
    const atStart = conversation.loaded && conversation.more === false;
    start.hidden = !atStart;
    if (atStart) {
      const empty = conversation.messages.size === 0 && this.state.pendingIn(conversation.key).length === 0;
      const where = conversation.kind === "room" ? `#${conversation.name}` : `your conversation with ${conversation.name}`;
      start.textContent = conversation.error ?? (empty ? `No messages in ${where} yet. Say hello!` : `This is the start of ${where}.`);
    }
  }

  /**
   * Show the open conversation's messages. `history`: "bottom" (scroll to the end), "prepend" (older
   * messages above: keep what the reader sees in place) or "keep"; `arrived`: a new message came in.
   */
  renderMessages({ history = null, arrived = false, own = false } = {}) {
    const conversation = this.open;
    const list = $("messages");
    const scroller = $("scroller");
    if (!conversation) {
      patchChildren(list, []);
      return;
    }
    if (list.dataset.key !== conversation.key) {
      list.replaceChildren();
      list.patchCache = null;
      list.dataset.key = conversation.key;
      history = "bottom";
    }
    this.renderHistoryTop();
    const nearBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
    const previousHeight = scroller.scrollHeight;
    const previousTop = scroller.scrollTop;
    const items = [];
    const rights = roomview.rightsIn(this, conversation); // which Edit and Delete buttons show
    let previous = null;
    // The "New messages" line goes before the first message after where the reader stood on opening.
    const line = this.lineAfter === null ? null : firstUnread(conversation.sorted(), this.lineAfter, this.me);
    const push = (entry) => {
      const date = new Date(entry.ts);
      const day = dayKey(date);
      if (!previous || previous.day !== day) {
        items.push({ key: `day:${day}`, sig: day, create: () => h("li", { class: "day-divider" }, h("span", {}, dayLabel(date))) });
      }
      let grouped = previous !== null && previous.day === day && previous.from === entry.from && date - previous.date < GROUP_GAP_MS;
      if (entry.seq !== undefined && entry.seq === line) {
        items.push({ key: "new-line", sig: "new", create: () => h("li", { class: "new-divider" }, h("span", {}, "New messages")) });
        grouped = false;
      }
      items.push({
        key: entry.key,
        sig: `${grouped}|${entry.state ?? ""}|${entry.stateLabel ?? ""}|${entry.rev ?? 0}|${rights}`,
        create: () => this.messageItem(entry, grouped, date),
      });
      previous = { day, from: entry.from, date };
    };
    for (const message of conversation.sorted()) {
      const { seq, from, text, ts, edited, deleted, mentions } = message;
      push({ key: `m:${seq}`, from, text, ts, seq, edited, deleted, mentions, rev: message.rev ?? 0 });
    }
    for (const item of this.state.pendingIn(conversation.key)) {
      push({ key: `p:${item.id}`, from: this.me, text: item.text, ts: item.ts, id: item.id, state: item.state, stateLabel: this.pendingLabel(item) });
    }
    patchChildren(list, items);
    const lineElement = history === "bottom" ? list.querySelector(".new-divider") : null;
    if (lineElement) {
      // Opened with news: start at the first unread message, the "New messages" line at the top.
      scroller.scrollTop = lineElement.offsetTop - scroller.offsetTop - 8;
    } else if (history === "bottom" || (arrived && (own || nearBottom))) {
      scroller.scrollTop = scroller.scrollHeight;
      $("jump").hidden = true;
    } else if (history === "prepend") {
      scroller.scrollTop = previousTop + (scroller.scrollHeight - previousHeight);
    } else if (arrived) {
      $("jump").hidden = false;
    }
  }

  replyTo(entry) {
    const conversation = this.open;
    if (conversation) this.composer.reply(entry, { mention: conversation.kind !== "dm" });
  }

  pendingLabel(item) {
    switch (item.state) {
      case "failed":
        return "Not delivered";
      case "rejected":
        return `Not sent: ${item.error ?? "refused by the server"}`;
      case "queued":
        return this.canSend() ? "Sending…" : "Waiting for connection…";
      default:
        return "Sending…";
    }
  }

  messageItem(entry, grouped, date) {
    const own = entry.from === this.me;
    const classes = ["message", own ? "own" : "other", grouped ? "grouped" : "first"];
    if (entry.state) classes.push("pending", `state-${entry.state}`);
    if (!own && mentionsMe(entry, this.me)) classes.push("mentions-me");
    const item = h("li", { class: classes.join(" "), dataset: entry.seq ? { seq: entry.seq } : { pending: entry.id } });
    if (!own) item.append(grouped ? h("span", { class: "avatar-space", "aria-hidden": "true" }) : avatar(entry.from));
    const body = h("div", { class: "message-body" });
    const time = h("time", { datetime: date.toISOString(), title: formatFull(date) }, formatTime(date));
    if (!grouped && !own) body.append(h("div", { class: "sender" }, entry.from));
    else body.append(h("span", { class: "visually-hidden sender" }, own ? "You" : entry.from));
    const reply =
      entry.seq && !entry.deleted
        ? h("button", { type: "button", class: "reply link", "aria-label": `Reply to ${entry.from}`, onclick: () => this.replyTo(entry) }, "Reply")
        : null;
    // Edited text goes through the same Markdown renderer; a tombstone says "message deleted" (roomview.js).
    const text = roomview.messageText(entry, (source) => formatted(source, this.me));
    const bubble = h("div", { class: "bubble" }, text, h("span", { class: "meta" }, reply, roomview.editedMark(entry), time));
    body.append(bubble);
    const actions = roomview.messageActions(this, entry);
    if (actions) body.append(actions);
    if (entry.state) {
      const status = h("div", { class: "delivery" }, h("span", {}, entry.stateLabel));
      if (entry.state === "failed") {
        status.append(h("button", { type: "button", class: "link", onclick: () => this.retry(entry.id) }, "Retry"));
      } else if (entry.state === "rejected") {
        status.append(h("button", { type: "button", class: "link", onclick: () => this.discard(entry.id) }, "Delete"));
      }
      body.append(status);
    }
    item.append(body);
    return item;
  }
}

/** patchChildren, or one muted line saying the list is empty. */
function patchList(list, items, emptyText) {
  if (items.length) {
    patchChildren(list, items);
  } else {
    list.replaceChildren(...(emptyText ? [h("li", { class: "muted empty-list" }, emptyText)] : []));
    list.patchCache = null;
  }
}

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

let toastTimer = null;
function toast(text) {
  const element = $("toast");
  element.textContent = text;
  element.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    element.hidden = true;
  }, 6000);
}

// ------------------------------------------------------------ screens

function showScreen(name) {
  $("boot").hidden = name !== "boot";
  $("login-screen").hidden = name !== "login";
  $("chat-screen").hidden = name !== "chat";
}

function showLogin(notice = "") {
  showScreen("login");
  document.title = "tornado-chat";
  $("register-button").hidden = config.registration !== "open";
  $("guest-box").hidden = !config.guests;
  $("login-tagline").textContent =
    config.registration === "open"
      ? "Log in, or pick a name and a password to create an account."
      : "Log in with the account your administrator gave you.";
  $("login-error").textContent = notice;
  $("login-password").value = "";
  const name = $("login-name");
  if (!NARROW.matches) name.focus();
}

function enterChat(who) {
  showScreen("chat");
  chat = new Chat(who);
  chat.start();
}

function leaveChat({ keepState, notice }) {
  if (chat) chat.stop({ keepState });
  chat = null;
  $("messages").replaceChildren();
  $("messages").patchCache = null;
  delete $("messages").dataset.key;
  for (const id of ["room-list", "other-rooms", "people-list"]) {
    $(id).replaceChildren();
    $(id).patchCache = null;
  }
  document.body.classList.remove("conversation-open");
  showLogin(notice);
}

function loginProblem(problem, action) {
  if (!(problem instanceof ApiError)) return "Cannot reach the server. Check your connection and try again.";
  switch (problem.code) {
    case "bad_credentials":
      return config.registration === "open"
        ? "Wrong name or password. New here? Choose Create account."
        : "Wrong name or password.";
    case "username_taken":
      return action === "register" ? "That name is taken. If it is yours, choose Log in." : "That name is taken.";
    case "too_many_attempts":
      return `Too many attempts: try again in ${problem.retryAfterS || 60} s.`;
    case "busy":
      return "The server is busy: try again in a moment.";
    case "bad_password":
      return "Passwords are 8 to 1024 characters.";
    case "registration_closed":
      return "Accounts are created by the administrator here.";
    default:
      return problem.message || "Something went wrong: try again.";
  }
}

function bindLogin() {
  const form = $("login-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = event.submitter?.value || "login";
    const name = $("login-name").value.trim();
    const password = $("login-password").value;
    const error = $("login-error");
    error.textContent = "";
    if (!NAME_RULE.test(name)) {
      error.textContent = "Names are 1-32 characters: letters, digits, '.', '_' and '-'.";
      $("login-name").focus();
      return;
    }
    if (action === "register" && password.length < 8) {
      error.textContent = "Choose a password of at least 8 characters.";
      $("login-password").focus();
      return;
    }
    if (action === "login" && !password) {
      error.textContent = config.guests ? "Enter your password, or continue as a guest." : "Enter your password.";
      $("login-password").focus();
      return;
    }
    const buttons = form.querySelectorAll("button");
    for (const button of buttons) button.disabled = true;
    try {
      const who =
        action === "register"
          ? await api.register(name, password)
          : await api.login(name, action === "guest" ? null : password);
      $("login-password").value = "";
      enterChat(who);
    } catch (problem) {
      error.textContent = loginProblem(problem, action);
    } finally {
      for (const button of buttons) button.disabled = false;
    }
  });
}

function bindChat() {
  const textarea = $("composer-text");
  const fit = () => {
    textarea.style.height = "auto";
    textarea.style.height = `${Math.min(textarea.scrollHeight, 160)}px`;
  };
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    if (chat?.editor.editing) {
      if (chat.editor.submit(textarea.value)) fit(); // the box gets back what was typed before the edit
    } else if (chat?.compose(textarea.value)) {
      chat.composer.sent();
      fit();
    }
    textarea.focus();
  });
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    } else if (event.key === "ArrowUp" && !textarea.value && chat?.editor.startLast()) {
      event.preventDefault(); // edit our last message, as Slack does
    } else if (event.key === "Escape" && chat?.editor.editing) {
      event.preventDefault();
      chat.editor.cancel();
    }
  });
  $("edit-cancel").addEventListener("click", () => chat?.editor.cancel());
  roomview.bindRoomControls(() => chat);
  textarea.addEventListener("input", () => {
    fit();
    chat?.composer.input();
  });
  textarea.addEventListener("fit", fit); // the text changed under the page's hand (an edit began or ended)
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const q = $("search-text").value.trim();
    if (q && chat) chat.search.submit(q);
  });
  $("search-close").addEventListener("click", () => {
    chat?.search.close();
    chat?.readOpen();
  });
  $("search-more").addEventListener("click", () => chat?.search.more());
  $("mute-button").addEventListener("click", () => {
    if (!chat?.openKey) return;
    chat.prefs.toggleMute(chat.openKey);
    chat.renderAll();
  });
  $("notify-button").addEventListener("click", async () => {
    await chat?.notifier.enable(); // asked only here, from a click
    chat?.renderPrefs();
  });
  $("sound-button").addEventListener("click", () => {
    if (!chat) return;
    chat.prefs.setSound(!chat.prefs.sound);
    chat.renderPrefs();
    if (chat.prefs.sound) chat.notifier.beep();
  });

  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (chat?.joinRoom($("join-room").value)) $("join-room").value = "";
  });
  $("join-general").addEventListener("click", () => chat?.joinRoom("general"));
  $("more-rooms").addEventListener("click", () => chat?.moreRooms());
  $("person-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await chat?.startConversation($("person-name").value)) $("person-name").value = "";
  });
  $("leave-button").addEventListener("click", () => {
    $("members").open = false;
    const conversation = chat?.open;
    if (conversation?.kind === "room") chat.leaveRoom(conversation.name);
  });
  $("back-button").addEventListener("click", () => chat?.openConversation(null));
  $("retry-now").addEventListener("click", () => chat?.link.retryNow());
  $("load-older").addEventListener("click", () => {
    if (chat?.open) chat.loadHistory(chat.open, true);
  });
  $("scroller").addEventListener("scroll", () => {
    const scroller = $("scroller");
    const conversation = chat?.open;
    if (conversation && scroller.scrollTop < 60 && conversation.more === true && !conversation.error) {
      chat.loadHistory(conversation, true);
    }
    if (scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80) $("jump").hidden = true;
  });
  $("jump").addEventListener("click", () => {
    $("scroller").scrollTop = $("scroller").scrollHeight;
    $("jump").hidden = true;
  });
  $("logout-button").addEventListener("click", () => {
    $("account-menu").open = false;
    chat?.logout();
  });
  // Menus close on a click elsewhere, and on Escape.
  document.addEventListener("click", (event) => {
    for (const menu of document.querySelectorAll("details.menu[open]")) {
      if (!menu.contains(event.target)) menu.open = false;
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    for (const menu of document.querySelectorAll("details.menu[open]")) {
      menu.open = false;
      menu.querySelector("summary").focus();
    }
  });

  const dialog = $("password-dialog");
  $("password-button").addEventListener("click", () => {
    $("account-menu").open = false;
    $("password-error").textContent = "";
    $("password-username").value = chat?.me ?? "";
    $("current-password").value = "";
    $("new-password").value = "";
    dialog.showModal();
  });
  $("password-cancel").addEventListener("click", () => dialog.close());
  $("password-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const current = $("current-password").value;
    const next = $("new-password").value;
    const error = $("password-error");
    if (next.length < 8) {
      error.textContent = "Choose a new password of at least 8 characters.";
      return;
    }
    try {
      await chat?.changePassword(current, next);
      dialog.close();
      toast("Password changed. Your other tabs and devices were logged out.");
    } catch (problem) {
      error.textContent =
        problem instanceof ApiError && problem.code === "bad_credentials"
          ? "The current password is wrong."
          : loginProblem(problem, "password");
    }
  });
}

async function boot() {
  bindLogin();
  bindChat();
  for (let attempt = 0; ; attempt++) {
    try {
      config = { ...config, ...(await api.config()) };
      break;
    } catch (problem) {
      if (!(problem instanceof NetworkError)) break;
      $("boot").textContent = "Cannot reach the server: retrying…";
      await new Promise((resolve) => setTimeout(resolve, 500 + backoffDelay(attempt)));
    }
  }
  try {
    enterChat(await api.me());
  } catch {
    showLogin();
  }
}

boot();
