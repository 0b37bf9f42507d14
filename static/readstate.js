// Read state, as the server keeps it: per conversation, how far this user has read (`seq`), how many
// messages came after that (`unread`) and how many of those mention them (`mentions`). Every tab and
// device of the user gets the same numbers from the server (`welcome`, `read` and `rooms` frames); between
// two of those, messages that arrive are counted here the way the server counts them, so that the badges
// move at once. No DOM here: Node's test runner drives it (tests/js/readstate.test.mjs).
//
// Muting is this browser's choice, kept with the user's preferences (prefs.js): a muted conversation still
// counts its unread messages, but they stay out of the title, the favicon, notifications and sounds.

/** @typedef {{seq: number, unread: number, mentions: number, last: number}} ReadEntry */

export class ReadState {
  constructor() {
    /** @type {Map<string, ReadEntry>} conversation key → where the user stands */
    this.entries = new Map();
  }

  /** @returns {ReadEntry} */
  entry(key) {
    let entry = this.entries.get(key);
    if (!entry) {
      entry = { seq: 0, unread: 0, mentions: 0, last: 0 };
      this.entries.set(key, entry);
    }
    return entry;
  }

  /** The server's word for one conversation (a `welcome` `unread` entry, a `read` frame, a `rooms` entry). */
  apply(key, { seq, unread, mentions, last }) {
    const entry = this.entry(key);
    if (Number.isInteger(seq)) entry.seq = Math.max(entry.seq, seq);
    if (Number.isInteger(unread)) entry.unread = unread;
    if (Number.isInteger(mentions)) entry.mentions = mentions;
    if (Number.isInteger(last)) entry.last = Math.max(entry.last, last);
  }

  /** @returns {number} how far the user has read `key` (0: nothing) */
  position(key) {
    return this.entries.get(key)?.seq ?? 0;
  }

  unreadIn(key) {
    return this.entries.get(key)?.unread ?? 0;
  }

  mentionsIn(key) {
    return this.entries.get(key)?.mentions ?? 0;
  }

  /** Unread messages everywhere but in the conversations `skip(key)` says to leave out (muted ones). */
  total(skip = () => false) {
    let total = 0;
    for (const [key, entry] of this.entries) if (!skip(key)) total += entry.unread;
    return total;
  }

  /**
   * A new message in `key` (live or replayed; count each one once). Ours means read up to it, as on the
   * server; someone else's is unread unless the reader is looking at it (`seen`: the page marks it read).
   * @param {{seq: number, from: string, mentions?: string[]}} message
   * @returns {boolean} the counts changed
   */
  arrived(key, message, { me, seen }) {
    const entry = this.entry(key);
    // The server's counts already hold what it had when it sent them (a replay brings those again).
    const counted = message.seq <= entry.last;
    entry.last = Math.max(entry.last, message.seq);
    if (counted || message.seq <= entry.seq) return false;
    if (message.from === me) {
      entry.seq = message.seq;
      entry.unread = 0;
      entry.mentions = 0;
      return true;
    }
    if (seen) return false; // the page reads it now, and tells the server (`readUpTo`)
    entry.unread += 1;
    if (mentionsMe(message, me)) entry.mentions += 1;
    return true;
  }

  /**
   * The reader has seen `key` up to `seq`. @returns {boolean} that is further than the server knows: send a
   * `read` frame (the counts drop now; the server's `read` frame confirms them)
   */
  readUpTo(key, seq) {
    const entry = this.entry(key);
    if (!Number.isInteger(seq) || seq <= entry.seq) return false;
    entry.seq = seq;
    entry.unread = 0;
    entry.mentions = 0;
    return true;
  }

  /**
   * Message `seq` of `key` was edited or deleted: it mentions the user now (`after`) or no more. Counted
   * like the server counts it: only while it is unread.
   * @returns {boolean} the counts changed
   */
  mentionChanged(key, seq, before, after) {
    const entry = this.entries.get(key);
    if (!entry || before === after || seq <= entry.seq) return false;
    entry.mentions = Math.max(0, entry.mentions + (after ? 1 : -1));
    return true;
  }

  /** The conversation is gone (a room left): nothing in it is unread any more. */
  forget(key) {
    this.entries.delete(key);
  }
}

/** Whether a message names `me` (or the whole room). */
export function mentionsMe(message, me) {
  const mentions = Array.isArray(message.mentions) ? message.mentions : [];
  return mentions.includes(me) || mentions.includes("@room");
}

/**
 * Where the "New messages" line goes: before the first message after `position` written by someone else.
 * @param {{seq: number, from: string}[]} messages oldest first
 * @returns {number | null} that message's seq, or null when everything shown was read
 */
export function firstUnread(messages, position, me) {
  for (const message of messages) if (message.seq > position && message.from !== me) return message.seq;
  return null;
}
