// Fakes for driving static/chatstate.js under Node: storage, a clock, predictable ids.

import { ChatState } from "../../static/chatstate.js";

/** An in-memory Web Storage (the part persist.js uses). `full`: every write fails, as in a full quota. */
export class FakeStorage {
  constructor(entries = {}) {
    this.data = new Map(Object.entries(entries));
    this.full = false;
  }

  get length() {
    return this.data.size;
  }

  key(index) {
    return [...this.data.keys()][index] ?? null;
  }

  getItem(key) {
    return this.data.has(key) ? this.data.get(key) : null;
  }

  setItem(key, value) {
    if (this.full) throw new Error("QuotaExceededError");
    this.data.set(key, String(value));
  }

  removeItem(key) {
    this.data.delete(key);
  }

  /** Every stored record of `user`, parsed: key → value. */
  records(user = "alice") {
    const prefix = `tornado-chat/v1/user/${encodeURIComponent(user)}/`;
    return Object.fromEntries(
      [...this.data].filter(([key]) => key.startsWith(prefix)).map(([key, value]) => [key, JSON.parse(value)]),
    );
  }
}

/** A clock that moves only when told. */
export class Clock {
  constructor(start = Date.parse("2024-05-01T12:00:00Z")) {
    this.ms = start;
    this.now = () => this.ms;
  }

  advance(ms) {
    this.ms += ms;
  }
}

/**
 * A ChatState for `alice` (unless `user` says otherwise) on fake storage, a fake clock and ids id-1, id-2 ...
 * Its persistence timers are cleared when the test ends, so a test that forgets does not hold the run open;
 * tests that need a write make it happen themselves (saveNow, writeNow, end).
 */
export function makeState(t, options = {}) {
  const { user = "alice", storage = new FakeStorage(), tabStorage = new FakeStorage(), clock = new Clock() } = options;
  let next = 0;
  const state = new ChatState({ user, storage, tabStorage, now: clock.now, newId: () => `id-${++next}` });
  t.after(() => {
    clearTimeout(state.persist.timer);
    clearInterval(state.persist.refresher);
  });
  return { state, storage, tabStorage, clock };
}

/** A `send` that records frames and says the link is up (or down, when `up` is false). */
export function recorder(up = true) {
  const frames = [];
  const send = (frame) => {
    if (!send.up) return false;
    frames.push(frame);
    return true;
  };
  send.up = up;
  send.frames = frames;
  return send;
}

/** A message frame as the server sends it. */
export function message(seq, fields = {}) {
  const ts = "2024-05-01T12:00:00.000Z";
  return { type: "message", seq, from: "bob", room: "desk", text: `message ${seq}`, ts, ...fields };
}
