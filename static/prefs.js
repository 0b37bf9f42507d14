// What this browser remembers besides the chat itself. No DOM: storage comes in from the page.
//
// - Per user, in localStorage (`tornado-chat/v1/prefs/<user>`): muted conversations, sound on or off, and
//   the last conversation opened in any tab, which a new tab opens.
// - Per tab, in sessionStorage (`tornado-chat/v1/drafts/<user>`): what was typed but not sent, per
//   conversation, so that a reload keeps it and another tab does not see it.

const PREFIX = "tornado-chat/v1/";

function read(storage, key) {
  if (!storage) return null;
  try {
    const value = JSON.parse(storage.getItem(key));
    return value && typeof value === "object" && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}

function write(storage, key, value) {
  if (!storage) return;
  try {
    storage.setItem(key, JSON.stringify(value));
  } catch {
    // full or refused: the page works on, a reload forgets
  }
}

export class Prefs {
  /**
   * @param {string} user
   * @param {{storage: StorageLike | null, tabStorage: StorageLike | null}} places localStorage and
   *   sessionStorage, or null when the browser refuses them
   */
  constructor(user, { storage, tabStorage }) {
    this.storage = storage;
    this.tabStorage = tabStorage;
    this.key = `${PREFIX}prefs/${encodeURIComponent(user)}`;
    this.draftKey = `${PREFIX}drafts/${encodeURIComponent(user)}`;
    const saved = read(storage, this.key) ?? {};
    /** @type {Set<string>} */
    this.muted = new Set(Array.isArray(saved.muted) ? saved.muted.filter((k) => typeof k === "string") : []);
    this.sound = saved.sound === true;
    /** @type {string | null} */
    this.lastOpen = typeof saved.lastOpen === "string" ? saved.lastOpen : null;
    const drafts = read(tabStorage, this.draftKey) ?? {};
    /** @type {Map<string, string>} */
    this.drafts = new Map(Object.entries(drafts).filter(([, text]) => typeof text === "string" && text));
  }

  save() {
    write(this.storage, this.key, { muted: [...this.muted], sound: this.sound, lastOpen: this.lastOpen });
  }

  isMuted(key) {
    return this.muted.has(key);
  }

  /** @returns {boolean} muted now */
  toggleMute(key) {
    if (this.muted.has(key)) this.muted.delete(key);
    else this.muted.add(key);
    this.save();
    return this.muted.has(key);
  }

  setSound(on) {
    this.sound = Boolean(on);
    this.save();
  }

  opened(key) {
    if (key === this.lastOpen) return;
    this.lastOpen = key;
    this.save();
  }

  draft(key) {
    return this.drafts.get(key) ?? "";
  }

  setDraft(key, text) {
    if (text) this.drafts.set(key, text);
    else this.drafts.delete(key);
    write(this.tabStorage, this.draftKey, Object.fromEntries(this.drafts));
  }
}
