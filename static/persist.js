// What must survive a reload: the resume point (`cursor`), the messages not yet acknowledged (`pending`,
// with their client ids), unread counts and the open conversation.
//
// Each tab keeps its own record in localStorage (its id lives in sessionStorage, which a reload keeps), so
// two tabs of the same user never overwrite each other's queue. A record that has not been refreshed for a
// while belongs to a tab that was closed: the next tab of that user adopts its unsent messages (sending
// them twice is harmless, the server de-duplicates by client id) and removes it.
//
// Nothing here reaches for the browser: the page hands in its localStorage and sessionStorage (or null when
// they are disabled), so the same code runs under Node's test runner with fakes.
//
// The record, under `tornado-chat/v1/user/<user, URI-encoded>/<tab id>`, is JSON:
//   {cursor, pending: [{id, key, text, ts, state, error}], unread: {key: count}, open, people, savedAt}
// Pages already out there wrote this format: keep it readable when changing it.

const PREFIX = "tornado-chat/v1/";
const TAB_KEY = `${PREFIX}tab`;
const REFRESH_MS = 5_000;
const STALE_MS = 30_000;
const SAVE_SOON_MS = 200;

/**
 * The part of the Web Storage API used here: localStorage and sessionStorage have it, and so can a fake.
 * @typedef {object} StorageLike
 * @property {number} length
 * @property {(index: number) => string | null} key
 * @property {(key: string) => string | null} getItem
 * @property {(key: string, value: string) => void} setItem
 * @property {(key: string) => void} removeItem
 */

/**
 * What `Persist.load` returns. Only the shape is checked here (arrays are arrays, `unread` is an object);
 * the entries are as stored, for the caller to validate.
 * @typedef {object} SavedState
 * @property {unknown} cursor
 * @property {unknown[]} pending
 * @property {Record<string, unknown>} unread
 * @property {unknown} open
 * @property {unknown[]} people
 */

/** `bytes` random bytes as hex: client message ids and tab ids. */
export function randomId(bytes = 9) {
  const data = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** This tab's id, kept in per-tab storage so that a reload finds its own record again. */
function tabId(tabStorage) {
  if (!tabStorage) return randomId(6);
  try {
    let id = tabStorage.getItem(TAB_KEY);
    if (!id) {
      id = randomId(6);
      tabStorage.setItem(TAB_KEY, id);
    }
    return id;
  } catch {
    return randomId(6);
  }
}

/** A stored record as an object; null when it is missing or not JSON (never an exception). */
function read(store, key) {
  try {
    const value = JSON.parse(store.getItem(key));
    return value && typeof value === "object" ? value : null;
  } catch {
    return null;
  }
}

const isRecord = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

/** A record with its parts in the shape `load` promises: a damaged part reads as empty. */
function shaped(record) {
  return {
    cursor: record.cursor ?? null,
    pending: Array.isArray(record.pending) ? record.pending : [],
    unread: isRecord(record.unread) ? { ...record.unread } : {},
    open: record.open ?? null,
    people: Array.isArray(record.people) ? record.people : [],
    savedAt: record.savedAt,
  };
}

export class Persist {
  /**
   * @param {string} user whose records these are (each user's are apart)
   * @param {object} places
   * @param {StorageLike | null} places.storage where records are kept (localStorage); null: nothing survives
   *   a reload, everything else works
   * @param {StorageLike | null} [places.tabStorage] where this tab's id is kept (sessionStorage); null: a new
   *   id every time, so a reload finds its old record only once it has gone stale
   * @param {() => number} [places.now] the clock, in ms since the epoch
   */
  constructor(user, { storage, tabStorage = null, now = Date.now }) {
    this.store = storage;
    this.now = now;
    this.userPrefix = `${PREFIX}user/${encodeURIComponent(user)}/`;
    this.key = this.userPrefix + tabId(tabStorage);
    this.timer = null;
    this.refresher = null;
    this.snapshot = null;
  }

  /**
   * This tab's saved state, with the unsent messages of closed tabs of the same user folded in (and their
   * records removed). Records of tabs still alive are left alone.
   * @returns {SavedState}
   */
  load() {
    if (!this.store) return shaped({});
    const own = shaped(read(this.store, this.key) ?? {});
    const now = this.now();
    for (let i = this.store.length - 1; i >= 0; i--) {
      const key = this.store.key(i);
      if (!key || !key.startsWith(this.userPrefix) || key === this.key) continue;
      const stored = read(this.store, key);
      if (stored && now - (stored.savedAt ?? 0) < STALE_MS) continue; // a live tab
      if (stored) {
        const other = shaped(stored);
        const known = new Set(own.pending.map((item) => item?.id));
        own.pending.push(...other.pending.filter((item) => item && !known.has(item.id)));
        if (own.cursor === null && Number.isInteger(other.cursor)) own.cursor = other.cursor;
        for (const [conv, count] of Object.entries(other.unread)) {
          own.unread[conv] = Math.max(own.unread[conv] ?? 0, count);
        }
        own.people = [...new Set([...own.people, ...other.people])];
      }
      this.store.removeItem(key);
    }
    own.pending.sort((a, b) => (a?.ts < b?.ts ? -1 : a?.ts > b?.ts ? 1 : 0));
    return own;
  }

  /**
   * Remember `snapshot()` now: for anything that must not be lost, such as a new pending message.
   * @param {() => object} snapshot the state to write, asked for at each write
   */
  saveNow(snapshot) {
    clearTimeout(this.timer);
    this.timer = null;
    this.snapshot = snapshot;
    this.write();
  }

  /** Remember soon; several changes in a burst cost one write. */
  saveSoon(snapshot) {
    this.snapshot = snapshot;
    if (this.timer === null) this.timer = setTimeout(() => this.saveNow(snapshot), SAVE_SOON_MS);
  }

  /**
   * Refresh the record now and then, so that other tabs know this one is alive. The page also calls
   * `write` when it is hidden for good (`pagehide`): timers do not run after that.
   */
  keepAlive() {
    clearInterval(this.refresher);
    this.refresher = setInterval(() => this.write(), REFRESH_MS);
  }

  /** Write the latest snapshot now, if there is one (after `stop` or `clear` there is none). */
  write() {
    if (!this.store || !this.snapshot) return;
    try {
      this.store.setItem(this.key, JSON.stringify({ ...this.snapshot(), savedAt: this.now() }));
    } catch {
      // full or disabled: keep running, a reload may lose the queue
    }
  }

  /** Write a last time and stop refreshing: the record waits for the next login (or a later tab adopts it). */
  stop(snapshot) {
    this.saveNow(snapshot);
    clearInterval(this.refresher);
    this.refresher = null;
    this.snapshot = null;
  }

  /** Forget this tab's record (an explicit log out). */
  clear() {
    clearTimeout(this.timer);
    clearInterval(this.refresher);
    this.timer = null;
    this.refresher = null;
    this.snapshot = null;
    if (this.store) this.store.removeItem(this.key);
  }
}
