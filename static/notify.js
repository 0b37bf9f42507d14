// Telling the user about messages while they look elsewhere: desktop notifications (Notification API),
// the unread count on the favicon, and an optional sound.
//
// - Permission for notifications is only ever asked from a click (`enable`), never on load.
// - A notification goes out for a direct or group message, or one that mentions the user, while the tab is
//   hidden, unless the conversation is muted. One per conversation at a time (`tag`): a newer one replaces it.
// - The favicon shows the unread count (not counting muted conversations) in a red circle; the plain icon
//   when there is nothing unread.
// - The sound (off unless the user turns it on) is a short tone made with Web Audio: no file to load.

const ICON = "static/favicon.svg";
const BODY_CHARS = 140;

/** The favicon with `count` in a badge, as an SVG data: URL (the CSP allows data: images). */
export function badgeIcon(count) {
  const label = count > 99 ? "99+" : String(count);
  const size = label.length > 2 ? 11 : 14;
  const svg =
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">' +
    '<rect width="32" height="32" rx="6" fill="#2563eb"/><path d="M8 10h16v10H14l-5 4v-4H8z" fill="#fff"/>' +
    '<circle cx="22" cy="10" r="10" fill="#b91c1c"/>' +
    `<text x="22" y="14.5" font-family="Arial,sans-serif" font-size="${size}" font-weight="700" ` +
    `text-anchor="middle" fill="#fff">${label}</text></svg>`;
  return `data:image/svg+xml,${encodeURIComponent(svg)}`;
}

export class Notifier {
  /**
   * @param {{prefs: import("./prefs.js").Prefs, open: (key: string) => void}} hooks open: show a conversation
   *   (a notification was clicked)
   */
  constructor({ prefs, open }) {
    this.prefs = prefs;
    this.open = open;
    this.audio = null;
    this.shownCount = 0;
  }

  get supported() {
    return typeof window.Notification === "function";
  }

  /** "granted", "denied", "default", or "unsupported". */
  get permission() {
    return this.supported ? window.Notification.permission : "unsupported";
  }

  /** Ask for permission; only call this from a user's click. @returns {Promise<string>} the permission */
  async enable() {
    if (!this.supported) return "unsupported";
    try {
      return await window.Notification.requestPermission();
    } catch {
      return this.permission;
    }
  }

  /**
   * A message arrived in `key`. Notify when the tab is hidden, it is a direct or group message or mentions
   * the user, and the conversation is not muted; beep when the sound is on.
   * @returns {boolean} a notification was shown
   */
  message({ key, title, message, direct, mentioned }) {
    if (this.prefs.isMuted(key) || !(direct || mentioned)) return false;
    if (this.prefs.sound && (document.hidden || !document.hasFocus())) this.beep();
    if (!document.hidden || this.permission !== "granted") return false;
    const body = message.text.length > BODY_CHARS ? `${message.text.slice(0, BODY_CHARS)}…` : message.text;
    try {
      const shown = new window.Notification(title, { body, tag: key, icon: ICON });
      shown.onclick = () => {
        window.focus();
        this.open(key);
        shown.close();
      };
      return true;
    } catch {
      return false; // some browsers only notify from a service worker
    }
  }

  /** The unread count on the favicon (0: the plain icon). */
  badge(count) {
    if (count === this.shownCount) return;
    this.shownCount = count;
    const link = document.querySelector('link[rel="icon"]');
    if (!link) return;
    if (!link.dataset.plain) link.dataset.plain = link.getAttribute("href");
    link.setAttribute("type", "image/svg+xml");
    link.setAttribute("href", count > 0 ? badgeIcon(count) : link.dataset.plain);
  }

  beep() {
    try {
      this.audio ??= new AudioContext();
      const oscillator = this.audio.createOscillator();
      const gain = this.audio.createGain();
      oscillator.frequency.value = 880;
      gain.gain.setValueAtTime(0.08, this.audio.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.0001, this.audio.currentTime + 0.25);
      oscillator.connect(gain).connect(this.audio.destination);
      oscillator.start();
      oscillator.stop(this.audio.currentTime + 0.25);
    } catch {
      // no audio here: nothing to say
    }
  }
}
