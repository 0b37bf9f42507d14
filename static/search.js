// The search box and its results: `search` frames out, `search` answers drawn as a list; choosing a result
// opens its conversation at that message (chat.js `openAt`).

import { $, fill, formatFull, formatTime, h } from "./dom.js";

const PAGE = 20;

/**
 * One question on the wire at a time: the server answers one search per session at a time and refuses
 * another while one runs (`rate_limited`). A question asked meanwhile waits for that answer, and only the
 * latest goes; an answer is wanted only for the latest question. DOM-free (tests/js/dayone.test.mjs).
 */
export class OneAtATime {
  /** @param {(frame: object) => boolean} send puts a frame on the link; false when it is down */
  constructor(send, prefix) {
    this.send = send;
    this.prefix = prefix;
    this.serial = 0;
    this.onWire = null; // the id of the question sent and not yet answered
    this.wanted = null; // the latest question (with its id), until its answer or refusal comes
  }

  /** Ask `frame` (an id is added): now, or once the question on the wire is answered. False: the link is down. */
  ask(frame) {
    this.wanted = { ...frame, id: `${this.prefix}-${++this.serial}` };
    return this.onWire !== null || this.put();
  }

  put() {
    if (!this.send(this.wanted)) return false;
    this.onWire = this.wanted.id;
    return true;
  }

  /** Whether `id` is a question of ours (sent, or waiting). */
  mine(id) {
    return id !== undefined && (id === this.onWire || id === this.wanted?.id);
  }

  /**
   * An answer or a refusal came for `id`: a question waiting goes now.
   * @returns {boolean} it answers the latest question
   */
  settled(id) {
    if (id === this.onWire) {
      this.onWire = null;
      if (this.wanted !== null && this.wanted.id !== id) this.put();
    }
    if (this.wanted === null || this.wanted.id !== id) return false;
    this.wanted = null;
    return true;
  }

  /** The link came back: the question on the wire went with the old one; the latest is asked again. */
  relinked() {
    this.onWire = null;
    if (this.wanted !== null) this.put();
  }

  /** No answer is wanted any more (the panel closed). */
  drop() {
    this.wanted = null;
  }
}

export class SearchPanel {
  /**
   * @param {object} hooks
   *   send(frame): put a frame on the link; false when it is down
   *   keyOf(message): the conversation key of a message; label(key): how the sidebar names it
   *   openAt(key, seq): show that message in its conversation
   *   shown(visible): the panel opened or closed (the page hides the conversation under it)
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.query = null;
    this.asker = new OneAtATime((frame) => hooks.send(frame), "search");
    this.next = null;
    this.results = [];
  }

  get open() {
    return this.query !== null;
  }

  /** Start a search for `q` (already trimmed); false when the link is down. */
  submit(q) {
    this.query = q;
    this.results = [];
    this.next = null;
    if (!this.ask(null)) {
      this.render("Not connected: try again in a moment.");
      return false;
    }
    this.render("Searching…");
    return true;
  }

  ask(before) {
    const frame = { type: "search", q: this.query, limit: PAGE };
    if (before !== null) frame.before = before;
    return this.asker.ask(frame);
  }

  /** A `search` frame from the server (answers to an older question are dropped). */
  answered(frame) {
    if (!this.asker.settled(frame.id) || !this.open) return;
    this.results.push(...frame.results);
    this.next = frame.more ? frame.next : null;
    this.render(this.results.length ? "" : `Nothing found for “${this.query}”.`);
  }

  /** The server refused the search (an `error` frame with our id). @returns {boolean} it was ours */
  refused(error) {
    if (!this.asker.mine(error.id)) return false;
    if (this.asker.settled(error.id) && this.open) this.render(error.message);
    return true;
  }

  /** A new session (after a reconnect): the question lost with the old one is asked again. */
  relinked() {
    this.asker.relinked();
  }

  more() {
    if (this.next !== null && this.ask(this.next)) this.render("Searching…");
  }

  close() {
    this.query = null;
    this.asker.drop();
    $("search-panel").hidden = true;
    this.hooks.shown(false);
  }

  render(status) {
    $("search-panel").hidden = false;
    this.hooks.shown(true);
    $("search-title").textContent = `Results for “${this.query}”`;
    $("search-status").textContent = status;
    fill(
      $("search-results"),
      this.results.map((message) => {
        const key = this.hooks.keyOf(message);
        const date = new Date(message.ts);
        return h(
          "li",
          {},
          h(
            "button",
            { type: "button", class: "search-result", onclick: () => this.hooks.openAt(key, message.seq) },
            h(
              "span",
              { class: "search-where" },
              h("span", { class: "search-conv" }, this.hooks.label(key)),
              h("span", { class: "search-from" }, message.from),
              h("time", { datetime: date.toISOString(), title: formatFull(date) }, formatTime(date)),
            ),
            h("span", { class: "search-text", dir: "auto" }, message.text),
          ),
        );
      }),
    );
    $("search-more").hidden = this.next === null;
  }
}
