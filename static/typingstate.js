// "alice is typing…": who is typing where, and when this page may say that its user is. No DOM here.
//
// The page sends a `typing` frame at most once every TYPING_SEND_EVERY_MS per conversation while its user
// types; another user's notice shows for TYPING_SHOW_MS unless a new one or their message comes first.

export const TYPING_SEND_EVERY_MS = 3_000;
export const TYPING_SHOW_MS = 5_000;

export class TypingState {
  /** @param {() => number} now the clock, in ms */
  constructor(now = Date.now) {
    this.now = now;
    /** @type {Map<string, number>} conversation key → when we last said we were typing there */
    this.sent = new Map();
    /** @type {Map<string, Map<string, number>>} conversation key → user → until when they show as typing */
    this.typers = new Map();
  }

  /** The user typed in `key`. @returns {boolean} a `typing` frame should go out now */
  typed(key) {
    const now = this.now();
    if (now - (this.sent.get(key) ?? -Infinity) < TYPING_SEND_EVERY_MS) return false;
    this.sent.set(key, now);
    return true;
  }

  /** The user sent their message: the next keystroke may say so again at once. */
  sentMessage(key) {
    this.sent.delete(key);
  }

  /** Someone else is typing in `key`. */
  heard(key, user) {
    let users = this.typers.get(key);
    if (!users) this.typers.set(key, (users = new Map()));
    users.set(user, this.now() + TYPING_SHOW_MS);
  }

  /** Their message came: they are done typing it. @returns {boolean} they were shown as typing */
  stopped(key, user) {
    return this.typers.get(key)?.delete(user) ?? false;
  }

  /** @returns {string[]} who is typing in `key` now, sorted */
  who(key) {
    const users = this.typers.get(key);
    if (!users) return [];
    const now = this.now();
    for (const [user, until] of users) if (until <= now) users.delete(user);
    return [...users.keys()].sort();
  }

  /** @returns {number | null} ms until the next notice runs out (for a timer), or null when none shows */
  nextExpiry() {
    const now = this.now();
    let next = null;
    for (const users of this.typers.values()) {
      for (const until of users.values()) if (until > now && (next === null || until - now < next)) next = until - now;
    }
    return next;
  }
}

/** "alice is typing…", "alice and bob are typing…", "3 people are typing…"; "" for nobody. */
export function typingText(names) {
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return `${names.length} people are typing…`;
}
