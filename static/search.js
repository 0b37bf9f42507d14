// The search box and its results: `search` frames out, `search` answers drawn as a list; choosing a result
// opens its conversation at that message (chat.js `openAt`).

import { $, fill, formatFull, formatTime, h } from "./dom.js";

const PAGE = 20;

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
    this.frameId = null;
    this.next = null;
    this.serial = 0;
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
    this.frameId = `search-${++this.serial}`;
    const frame = { type: "search", id: this.frameId, q: this.query, limit: PAGE };
    if (before !== null) frame.before = before;
    return this.hooks.send(frame);
  }

  /** A `search` frame from the server (answers to an older question are dropped). */
  answered(frame) {
    if (frame.id !== this.frameId || !this.open) return;
    this.results.push(...frame.results);
    this.next = frame.more ? frame.next : null;
    this.render(this.results.length ? "" : `Nothing found for “${this.query}”.`);
  }

  /** The server refused the search (an `error` frame with our id). @returns {boolean} it was ours */
  refused(error) {
    if (error.id !== this.frameId || !this.open) return false;
    this.render(error.message);
    return true;
  }

  more() {
    if (this.next !== null && this.ask(this.next)) this.render("Searching…");
  }

  close() {
    this.query = null;
    this.frameId = null;
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
