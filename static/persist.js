// What must survive a reload: the resume point (`cursor`), the messages not yet acknowledged (`pending`,
// with their client ids), unread counts and the open conversation.
//
// Each tab keeps its own record in localStorage (its id lives in sessionStorage, which a reload keeps), so
// two tabs of the same user never overwrite each other's queue. A record that has not been refreshed for a
// while belongs to a tab that was closed: the next tab of that user adopts its unsent messages (sending
// them twice is harmless, the server de-duplicates by client id) and removes it.

const PREFIX = "tornado-chat/v1/";
const REFRESH_MS = 5_000;
const STALE_MS = 30_000;

export function randomId(bytes = 9) {
  const data = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("");
}

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled: nothing survives a reload, everything else works
  }
}

function tabId() {
  try {
    let id = sessionStorage.getItem(`${PREFIX}tab`);
    if (!id) {
      id = randomId(6);
      sessionStorage.setItem(`${PREFIX}tab`, id);
    }
    return id;
  } catch {
    return randomId(6);
  }
}

function read(store, key) {
  try {
    const value = JSON.parse(store.getItem(key));
    return value && typeof value === "object" ? value : null;
  } catch {
    return null;
  }
}

export class Persist {
  constructor(user) {
    this.store = storage();
    this.userPrefix = `${PREFIX}user/${encodeURIComponent(user)}/`;
    this.key = this.userPrefix + tabId();
    this.timer = null;
    this.refresher = null;
    this.snapshot = null;
  }

  /** This tab's saved state, with the unsent messages of closed tabs of the same user folded in. */
  load() {
    const empty = { cursor: null, pending: [], unread: {}, open: null, people: [] };
    if (!this.store) return empty;
    const own = { ...empty, ...(read(this.store, this.key) ?? {}) };
    const now = Date.now();
    for (let i = this.store.length - 1; i >= 0; i--) {
      const key = this.store.key(i);
      if (!key || !key.startsWith(this.userPrefix) || key === this.key) continue;
      const other = read(this.store, key);
      if (other && now - (other.savedAt ?? 0) < STALE_MS) continue; // a live tab
      if (other) {
        const known = new Set(own.pending.map((item) => item.id));
        own.pending.push(...(other.pending ?? []).filter((item) => item && !known.has(item.id)));
        if (own.cursor === null && Number.isInteger(other.cursor)) own.cursor = other.cursor;
        for (const [conv, count] of Object.entries(other.unread ?? {})) {
          own.unread[conv] = Math.max(own.unread[conv] ?? 0, count);
        }
        own.people = [...new Set([...own.people, ...(other.people ?? [])])];
      }
      this.store.removeItem(key);
    }
    own.pending.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
    return own;
  }

  /** Remember `snapshot()` now (call for anything that must not be lost, such as a new pending message). */
  saveNow(snapshot) {
    clearTimeout(this.timer);
    this.timer = null;
    this.snapshot = snapshot;
    this.write();
  }

  /** Remember soon; several changes in a burst cost one write. */
  saveSoon(snapshot) {
    this.snapshot = snapshot;
    if (this.timer === null) this.timer = setTimeout(() => this.saveNow(snapshot), 200);
  }

  /** Refresh the record now and then, so that other tabs know this one is alive. */
  keepAlive() {
    clearInterval(this.refresher);
    this.refresher = setInterval(() => this.write(), REFRESH_MS);
    window.addEventListener("pagehide", () => this.write());
  }

  write() {
    if (!this.store || !this.snapshot) return;
    try {
      this.store.setItem(this.key, JSON.stringify({ ...this.snapshot(), savedAt: Date.now() }));
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
