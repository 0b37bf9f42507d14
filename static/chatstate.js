// The client's half of "never lose, never repeat" (docs/protocol.md, "Delivery guarantee"), with no page
// in it: chat.js draws this state and wires events to it; Node's test runner drives it directly
// (tests/js/).
//
// - Every message typed gets a client id and goes into `pending`, written to storage at once.
// - It is sent when the link is up, and again after every reconnect, always with the same id, until an
//   `ack`, a final `error`, or our own message carrying that id (in a replay or in history) settles it.
// - `cursor` is the newest seq seen; reconnects pass it as `since` so the server replays what we missed.
//   It only moves forward.
// - Messages are kept by seq, so one that arrives twice (replay and history, ack and replay) is kept once.
// - Unread counts are the server's (readstate.js), not this tab's: every tab and device shows the same.
//
// Nothing here touches `window`, `document` or the DOM: storage and the clock come in through the
// constructor, frames go out through a `send` function the caller passes.

import { Persist, randomId } from "./persist.js";
import { ReadState } from "./readstate.js";

/** The server allows a burst of 40 frames and 20 a second: a queue resent after an outage stays well inside. */
export const SEND_BURST = 20;
export const SEND_RATE_PER_S = 10;

const KEY_RULE = /^(room|dm|group):./;

/** The key of a room's conversation, as stored and as used in the page. */
export const roomKey = (name) => `room:${name}`;
/** The key of a direct conversation with `name`. */
export const personKey = (name) => `dm:${name}`;
/** The key of a group conversation with `others` (everyone in it but this user), whatever their order. */
export const groupKey = (others) => `group:${[...new Set(others)].sort().join(",")}`;

/**
 * `room:x` → {kind: "room", name: "x"}; `dm:x` → {kind: "dm", name: "x"}; `group:a,b` → {kind: "group",
 * name: "a,b", people: ["a", "b"]}.
 */
export function parseKey(key) {
  const at = key.indexOf(":");
  const prefix = key.slice(0, at);
  const name = key.slice(at + 1);
  if (prefix === "group") return { kind: "group", name, people: name.split(",") };
  return { kind: prefix === "room" ? "room" : "dm", name };
}

/** The key of the conversation a frame names the server's way (`room`, `with` a name or a list). */
export function keyOfTarget(frame) {
  if (typeof frame.room === "string") return roomKey(frame.room);
  if (Array.isArray(frame.with)) return groupKey(frame.with);
  return typeof frame.with === "string" ? personKey(frame.with) : null;
}

/** The key of the conversation a message (or typing notice) belongs to, seen from `me`. */
export function keyOfMessage(message, me) {
  if (message.room) return roomKey(message.room);
  if (Array.isArray(message.members)) return groupKey(message.members.filter((name) => name !== me));
  return personKey(message.from === me ? message.to : message.from);
}

/** The `send` frame for a pending message; its `id` is the one it was given when typed, every time. */
export function sendFrame(item) {
  const target = parseKey(item.key);
  const to = target.kind === "room" ? { room: target.name } : { to: target.kind === "group" ? target.people : target.name };
  return { type: "send", id: item.id, text: item.text, ...to };
}

/**
 * A message typed here that the server has not settled yet.
 * @typedef {object} PendingItem
 * @property {string} id the client id, sent with every try so that the server stores it once
 * @property {string} key the conversation (`room:x` or `dm:x`)
 * @property {string} text
 * @property {string} ts when it was typed (ISO 8601)
 * @property {"queued"|"sending"|"sent"|"failed"|"rejected"} state queued: waits for the link; sending: in
 *   the outbox; sent: waits for its ack; failed: no ack in time or the server could not store it, sent again
 *   after a reconnect or on Retry; rejected: the server refused it for good, never sent again
 * @property {string | null} error why it was rejected (the server's message)
 * @property {number} sentAt when it was last sent (ms), for the ack timeout; not stored
 */

/** Only what a page of this client could have written; anything else in storage is ignored. */
function validPending(item) {
  return (
    item !== null &&
    typeof item === "object" &&
    typeof item.id === "string" &&
    typeof item.key === "string" &&
    typeof item.text === "string" &&
    /^(room|dm):/.test(item.key)
  );
}

/** A stored pending item as held in memory: whatever was in flight waits for the link again. */
function restoredPending(item, now) {
  return {
    id: item.id,
    key: item.key,
    text: item.text,
    // An unreadable time would break the page's date formatting: keep the text, with a time we can read.
    ts: typeof item.ts === "string" && !Number.isNaN(Date.parse(item.ts)) ? item.ts : new Date(now).toISOString(),
    state: item.state === "rejected" ? "rejected" : "queued",
    error: typeof item.error === "string" ? item.error : null,
    sentAt: 0,
  };
}

/** One room or direct conversation: its messages by seq, and where paging through its history stands. */
export class Conversation {
  /** @param {string} key `room:x` or `dm:x` */
  constructor(key) {
    const { kind, name } = parseKey(key);
    this.key = key;
    this.kind = kind;
    this.name = name;
    /** @type {Map<number, object>} seq → message */
    this.messages = new Map();
    this.sortedCache = null;
    this.loaded = false; // the newest page of history has been fetched
    this.loading = false;
    this.more = null; // older messages exist (null: not known yet)
    this.error = null; // why the last page could not be had, for the reader
  }

  /** What the history API takes to name this conversation (a group: its other members, comma-separated). */
  get target() {
    return this.kind === "room" ? { room: this.name } : { with: this.name };
  }

  /** What frames take to name it: `{room}`, `{with: name}` or `{with: [names]}`. */
  get frameTarget() {
    if (this.kind === "room") return { room: this.name };
    return { with: this.kind === "group" ? this.name.split(",") : this.name };
  }

  /** Keep a message unless one with its seq is here already. @returns {boolean} it was new */
  add(message) {
    if (this.messages.has(message.seq)) return false;
    this.messages.set(message.seq, message);
    this.sortedCache = null;
    return true;
  }

  /** The messages, oldest first. */
  sorted() {
    this.sortedCache ??= [...this.messages.values()].sort((a, b) => a.seq - b.seq);
    return this.sortedCache;
  }

  /** @returns {number | null} the seq of the oldest message held */
  oldestSeq() {
    const sorted = this.sorted();
    return sorted.length ? sorted[0].seq : null;
  }

  /**
   * Start fetching a page of history: the newest one, or (`older`) the one before the oldest message held.
   * @returns {{before: number | null} | null} what to ask for; null when a page is on its way already, or
   *   when older pages are not known to exist
   */
  beginPage(older) {
    if (this.loading || (older && this.more !== true)) return null;
    this.loading = true;
    this.error = null;
    return { before: older ? this.oldestSeq() : null };
  }

  /** The server will not show this history (403, 404): stop asking, say why. */
  pageRefused(reason) {
    this.loaded = true;
    this.more = false;
    this.error = reason;
  }

  /** The page did not come (network, server error): say so; asking again is allowed. */
  pageFailed(reason) {
    this.error = reason;
  }

  /** The request is over, whatever its outcome. */
  endPage() {
    this.loading = false;
  }

  /** Forget every message and paging state: what we hold may have a gap, history starts again. */
  reset() {
    this.messages.clear();
    this.sortedCache = null;
    this.loaded = false;
    this.more = null;
    this.error = null;
  }
}

export class ChatState {
  /**
   * Loads what an earlier page of this tab (or a closed tab of the same user) left in storage.
   * @param {object} options
   * @param {string} options.user the logged-in user's name
   * @param {StorageLike | null} options.storage where state survives a reload (localStorage); null when
   *   there is none. StorageLike is the part of the Web Storage API that persist.js uses
   * @param {StorageLike | null} [options.tabStorage] per-tab storage for the tab's id (sessionStorage)
   * @param {() => number} [options.now] the clock, in ms since the epoch
   * @param {() => string} [options.newId] a fresh client id for a message typed
   */
  constructor({ user, storage, tabStorage = null, now = Date.now, newId = () => randomId(12) }) {
    this.me = user;
    this.now = now;
    this.newId = newId;
    this.persist = new Persist(user, { storage, tabStorage, now });
    const saved = this.persist.load();
    /** @type {number | null} the newest seq seen: `since` for the next connection */
    this.cursor = Number.isInteger(saved.cursor) ? saved.cursor : null;
    /** @type {PendingItem[]} oldest first */
    this.pending = saved.pending.filter(validPending).map((item) => restoredPending(item, now()));
    /** Read positions and unread counts, as the server keeps them (older pages stored their own: ignored). */
    this.reads = new ReadState();
    /** @type {Set<string>} the people there is a direct conversation with */
    this.people = new Set(saved.people.filter((name) => typeof name === "string"));
    /** @type {Set<string>} keys of the group conversations this user is in */
    this.groups = new Set();
    for (const item of this.pending) {
      if (item.key.startsWith("dm:")) this.people.add(parseKey(item.key).name);
      if (item.key.startsWith("group:")) this.groups.add(item.key);
    }
    /** @type {string | null} the conversation on screen */
    this.openKey = typeof saved.open === "string" && KEY_RULE.test(saved.open) ? saved.open : null;
    /** @type {Map<string, Conversation>} */
    this.conversations = new Map();
    /** A replay is running (the connection was opened with `since` and `resumed` has not come yet). */
    this.replaying = false;
    /** Ids of pending messages to send, in order, paced by the token bucket below. */
    this.outbox = [];
    this.tokens = SEND_BURST;
    this.refilledAt = now();
  }

  // ------------------------------------------------------------ storage

  /** What is stored: the format pages already out there read back (see persist.js). */
  snapshot() {
    return {
      cursor: this.cursor,
      pending: this.pending.map(({ id, key, text, ts, state, error }) => ({ id, key, text, ts, state, error })),
      unread: {},
      open: this.openKey,
      people: [...this.people],
    };
  }

  /** Write now: for what must not be lost (a pending message added or settled). */
  saveNow() {
    this.persist.saveNow(() => this.snapshot());
  }

  /** Write within a moment: for what a reload could do without (the cursor). */
  saveSoon() {
    this.persist.saveSoon(() => this.snapshot());
  }

  /** The chat is on screen: write now, and keep the record fresh so that other tabs see this one alive. */
  begin() {
    this.persist.keepAlive();
    this.saveNow();
  }

  /** The page is going away (`pagehide`): write what we have, timers may never run again. */
  writeNow() {
    this.persist.write();
  }

  /**
   * The chat is over. `keep`: logged out by the server (say, a password changed elsewhere), so the queue
   * waits for the next login; otherwise logged out on purpose, and this tab's record is forgotten.
   */
  end({ keep }) {
    if (keep) this.persist.stop(() => this.snapshot());
    else this.persist.clear();
  }

  // ------------------------------------------------------------ conversations, cursor, unread

  /** The conversation with this key, made empty on first use. */
  conversation(key) {
    let conversation = this.conversations.get(key);
    if (!conversation) {
      conversation = new Conversation(key);
      this.conversations.set(key, conversation);
    }
    return conversation;
  }

  /** Put a conversation on screen (null: none). Reading it is the page's to say (`markRead`). */
  select(key) {
    this.openKey = key;
    this.saveSoon();
  }

  /** Move the cursor to `seq` if that is newer; it never goes back. @returns {boolean} it moved */
  advanceCursor(seq) {
    if (!Number.isInteger(seq) || (this.cursor !== null && seq <= this.cursor)) return false;
    this.cursor = seq;
    this.saveSoon();
    return true;
  }

  /** @returns {number} messages in `key` not read yet */
  unreadIn(key) {
    return this.reads.unreadIn(key);
  }

  /** @returns {number} messages not read yet, everywhere but where `skip(key)` (muted conversations) */
  totalUnread(skip = () => false) {
    return this.reads.total(skip);
  }

  /**
   * The reader has seen all of `key` that is here. @returns {{seq: number} | null} the `read` frame's
   * position when the server should be told (null: nothing new was read)
   */
  markRead(key) {
    const newest = this.conversation(key).sorted().at(-1)?.seq;
    const last = Math.max(newest ?? 0, this.reads.entry(key).last);
    return this.reads.readUpTo(key, last) ? { seq: last } : null;
  }

  // ------------------------------------------------------------ frames from the server

  /**
   * The server's `welcome` opened a connection: its contacts, group conversations and read state.
   * @param {{seq: number, contacts: string[], groups?: string[][], unread?: object[]}} welcome
   * @param {number | null} since what the connection was opened with: not null means a replay follows, and
   *   nothing is sent until its `resumed`, so that resends never overtake what the replay tells us
   */
  welcome(welcome, since) {
    this.replaying = since !== null;
    for (const name of welcome.contacts) this.people.add(name);
    for (const others of welcome.groups ?? []) this.groups.add(groupKey(others));
    for (const entry of welcome.unread ?? []) this.readFrame(entry);
    // A first connection: start from now (what came before is in history).
    if (this.cursor === null) this.cursor = welcome.seq;
  }

  /** A `read` frame (or a `welcome` `unread` entry): the server's word on one conversation. */
  readFrame(frame) {
    const key = keyOfTarget(frame);
    if (key === null) return null;
    this.reads.apply(key, frame);
    return key;
  }

  /**
   * The replay is over.
   * @param {{until: number, truncated: boolean}} frame
   * @returns {boolean} the replay was cut short: every conversation was reset and needs its history again
   */
  resumed(frame) {
    this.replaying = false;
    this.advanceCursor(frame.until);
    if (!frame.truncated) return false;
    // More was missed than the server replays: what we hold may have a gap.
    for (const conversation of this.conversations.values()) conversation.reset();
    return true;
  }

  /**
   * A `message` frame, live or replayed. Our own message settles the pending item with its id (its ack may
   * have been lost with the connection).
   * @param {object} message
   * @param {{visible: boolean}} page whether the page is in view: a message in the open conversation of a
   *   visible page is read as it arrives
   * @returns {{key: string, own: boolean, added: boolean} | null} where it went, whether it is ours, whether
   *   it was new (false: a duplicate by seq); null when it is not a message this client can show
   */
  receive(message, { visible }) {
    if (!Number.isInteger(message.seq) || typeof message.text !== "string") return null;
    this.advanceCursor(message.seq);
    const own = message.from === this.me;
    const key = keyOfMessage(message, this.me);
    if (key.startsWith("dm:")) this.people.add(parseKey(key).name);
    if (key.startsWith("group:")) this.groups.add(key);
    if (own && message.id !== undefined) this.settleByEcho(message.id);
    const added = this.conversation(key).add(message);
    if (added) this.reads.arrived(key, message, { me: this.me, seen: key === this.openKey && visible });
    return { key, own, added };
  }

  /**
   * An `ack`: the server has stored the message with that id. It leaves `pending` and joins its conversation
   * under the seq the server gave it.
   * @param {{id: string, seq: number, ts: string}} ack
   * @param {{ordered?: boolean}} [how] ordered: it came in order with everything else (a WebSocket, an event
   *   stream); false for the answer to a POST over HTTP, which can arrive before messages with smaller seqs
   *   still on their way down the stream
   * @returns {{key: string, added: boolean} | null} null when no pending message has that id (settled already)
   */
  settleByAck(ack, { ordered = true } = {}) {
    // During a replay the cursor waits for `resumed`, and an ack that may have overtaken the stream never
    // moves it: moving it past messages not received yet would skip them if the connection broke now.
    if (!this.replaying && ordered) this.advanceCursor(ack.seq);
    const item = this.takePending(ack.id);
    if (!item) return null;
    const { kind, name } = parseKey(item.key);
    const message = { seq: ack.seq, from: this.me, text: item.text, ts: ack.ts, id: ack.id };
    if (kind === "room") message.room = name;
    else message.to = name;
    const added = this.conversation(item.key).add(message);
    this.saveNow();
    return { key: item.key, added };
  }

  /**
   * An `error` frame. One that names a pending message settles it: `internal` means it was not stored and
   * may be tried again with the same id ("failed"); any other code is final ("rejected", never resent).
   * @param {{id?: string, code: string, message: string}} error
   * @returns {PendingItem | null} the pending message it was about, if any
   */
  settleByError(error) {
    const item = error.id !== undefined ? this.findPending(error.id) : null;
    if (!item) return null;
    if (error.code === "internal") {
      item.state = "failed";
    } else {
      item.state = "rejected";
      item.error = error.message;
    }
    this.saveNow();
    return item;
  }

  /**
   * A page of history (newest first, as the API gives it). Our own messages in it settle their pending
   * items. History does not move the cursor: newer messages elsewhere may still be waiting in a replay.
   * @param {Conversation} conversation
   * @param {{messages: object[], more: boolean}} page
   */
  addHistoryPage(conversation, page) {
    for (const message of page.messages) {
      if (!Number.isInteger(message.seq)) continue;
      if (message.from === this.me && message.id !== undefined) this.settleByEcho(message.id);
      conversation.add(message);
    }
    conversation.more = Boolean(page.more);
    conversation.loaded = true;
  }

  // ------------------------------------------------------------ sending

  /**
   * A message typed in conversation `key`: pending from now on, and stored before anything else happens,
   * so that a reload from here on cannot lose it.
   * @returns {PendingItem}
   */
  enqueue(key, text) {
    const item = {
      id: this.newId(),
      key,
      text,
      ts: new Date(this.now()).toISOString(),
      state: "queued",
      error: null,
      sentAt: 0,
    };
    this.pending.push(item);
    this.saveNow();
    return item;
  }

  /** @returns {PendingItem[]} the pending messages of one conversation, oldest first */
  pendingIn(key) {
    return this.pending.filter((item) => item.key === key);
  }

  /** @returns {PendingItem | undefined} */
  findPending(id) {
    return this.pending.find((item) => item.id === id);
  }

  /**
   * Put the messages waiting for the link in the outbox; `includeFailed` also those that failed (after a
   * reconnect: whatever was not acked is tried again, with the same id). Call only when frames can go out.
   * @returns {boolean} something was added: call `sendQueued`
   */
  queueUnsent(includeFailed) {
    let queued = false;
    for (const item of this.pending) {
      if (item.state === "queued" || (includeFailed && item.state === "failed")) {
        item.state = "sending";
        this.outbox.push(item.id);
        queued = true;
      }
    }
    return queued;
  }

  /**
   * Send from the outbox as fast as the rate allows (a burst of SEND_BURST, then SEND_RATE_PER_S a second).
   * @param {(frame: object) => boolean} send puts a frame on the link; false when the link is down
   * @returns {{changed: boolean, more: boolean}} changed: some message's state changed; more: the outbox is
   *   not empty yet, call again in a moment
   */
  sendQueued(send) {
    const now = this.now();
    this.tokens = Math.min(SEND_BURST, this.tokens + ((now - this.refilledAt) / 1000) * SEND_RATE_PER_S);
    this.refilledAt = now;
    let changed = false;
    while (this.outbox.length && this.tokens >= 1) {
      const item = this.findPending(this.outbox.shift());
      if (!item || item.state !== "sending") continue; // settled or discarded meanwhile
      if (!send(sendFrame(item))) {
        item.state = "queued";
        changed = true;
        break;
      }
      item.state = "sent";
      item.sentAt = now;
      this.tokens -= 1;
      changed = true;
    }
    return { changed, more: this.outbox.length > 0 };
  }

  /** The link went down: nothing is in flight any more, everything unsettled waits for the next one. */
  linkDown() {
    this.outbox = [];
    for (const item of this.pending) if (item.state === "sending" || item.state === "sent") item.state = "queued";
  }

  /**
   * Messages sent more than `timeoutMs` ago, while connected, without an ack show as failed (and are sent
   * again on Retry or after the next reconnect). @returns {boolean} some did
   */
  expireUnacked(timeoutMs) {
    const now = this.now();
    let changed = false;
    for (const item of this.pending) {
      if (item.state === "sent" && now - item.sentAt > timeoutMs) {
        item.state = "failed";
        changed = true;
      }
    }
    if (changed) this.saveNow();
    return changed;
  }

  /** Retry a failed message (with its id). @returns {boolean} it was failed and now waits to be sent */
  retry(id) {
    const item = this.findPending(id);
    if (!item || item.state !== "failed") return false;
    item.state = "queued";
    return true;
  }

  /** Drop a pending message for good (the reader deleted a rejected one). */
  discard(id) {
    this.takePending(id);
    this.saveNow();
  }

  /** Remove a pending message (and its outbox entry). @returns {PendingItem | null} */
  takePending(id) {
    const index = this.pending.findIndex((item) => item.id === id);
    if (index < 0) return null;
    const [item] = this.pending.splice(index, 1);
    this.outbox = this.outbox.filter((queued) => queued !== id);
    return item;
  }

  /** Our own message came back with this id: the server has it. */
  settleByEcho(id) {
    if (this.takePending(id)) this.saveNow();
  }
}
