// The message box: its length counted as the server counts it (code points, so an emoji is one), a warning
// instead of a silent cut when a text is too long, a draft per conversation that survives a reload of the
// tab, typing notices while the user types, and replies that quote the message answered. An edit of a sent
// message borrows the box (roomview.js's Editor): counted the same, it sets the draft aside until it ends.

/** How many characters the server sees in `text`: code points, not UTF-16 units. */
export function codePoints(text) {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

/** The counter shows once the text is this close to the limit. */
const SHOW_COUNT_AT = 0.9;
const QUOTED_LINES = 3;

/** What a reply to `message` starts with: its first lines quoted, and its author mentioned (in rooms/groups). */
export function replyText(message, { mention }) {
  const lines = message.text.split("\n").filter((line) => line.trim() !== "");
  const shown = lines.slice(0, QUOTED_LINES).map((line) => `> ${line}`);
  if (lines.length > QUOTED_LINES) shown.push("> …");
  return `${shown.join("\n")}\n${mention ? `@${message.from} ` : ""}`;
}

export class Composer {
  /**
   * @param {object} parts
   *   textarea, counter (the element that says how long the text is), sendButton
   *   prefs: where drafts are kept (prefs.js); typing: typingstate.js's TypingState
   *   sendTyping(key): tell the others in `key` that the user is typing
   */
  constructor({ textarea, counter, sendButton, prefs, typing, sendTyping }) {
    this.textarea = textarea;
    this.counter = counter;
    this.sendButton = sendButton;
    this.prefs = prefs;
    this.typing = typing;
    this.sendTyping = sendTyping;
    this.key = null;
    this.limit = 4000;
    /** While a message is edited in the box: the draft it replaced there, brought back when the edit ends. */
    this.editing = null;
  }

  /** The conversation on screen changed: keep what was typed for the old one, bring back the new one's. */
  switchTo(key) {
    if (key === this.key) return;
    this.endEdit();
    if (this.key !== null) this.prefs.setDraft(this.key, this.textarea.value);
    this.key = key;
    this.textarea.value = key === null ? "" : this.prefs.draft(key);
    this.update();
  }

  /** Put a message's text in the box to edit it: not a draft, and not typing anyone needs to hear about. */
  beginEdit(text) {
    if (this.editing === null) this.editing = { draft: this.textarea.value };
    this.textarea.value = text;
    this.update();
  }

  /** The edit was saved or given up: the draft comes back. */
  endEdit() {
    if (this.editing === null) return;
    this.textarea.value = this.editing.draft;
    this.editing = null;
    this.update();
  }

  setLimit(limit) {
    if (Number.isInteger(limit) && limit > 0) this.limit = limit;
    this.update();
  }

  /** The user typed (or pasted, or cut). */
  input() {
    if (this.editing !== null) {
      this.update();
      return;
    }
    if (this.key === null) return;
    this.prefs.setDraft(this.key, this.textarea.value);
    this.update();
    if (this.textarea.value.trim() && this.typing.typed(this.key)) this.sendTyping(this.key);
  }

  /** @returns {{length: number, over: boolean}} the text's length in code points, and whether it is too long */
  measure() {
    const length = codePoints(this.textarea.value);
    return { length, over: length > this.limit };
  }

  update() {
    const { length, over } = this.measure();
    const show = over || length >= this.limit * SHOW_COUNT_AT;
    this.counter.hidden = !show;
    this.counter.classList.toggle("over", over);
    this.counter.textContent = over
      ? `${length.toLocaleString()} / ${this.limit.toLocaleString()} characters: too long to send`
      : `${length.toLocaleString()} / ${this.limit.toLocaleString()}`;
    this.textarea.setAttribute("aria-invalid", over ? "true" : "false");
    this.sendButton.disabled = over;
  }

  /** The message went: the box is empty, and the next keystroke may say "typing" at once. */
  sent() {
    if (this.key !== null) {
      this.prefs.setDraft(this.key, "");
      this.typing.sentMessage(this.key);
    }
    this.textarea.value = "";
    this.update();
  }

  /** Start a reply to `message` under what is typed already. */
  reply(message, { mention }) {
    const before = this.textarea.value.trimEnd();
    this.textarea.value = `${before ? `${before}\n` : ""}${replyText(message, { mention })}`;
    this.input();
    this.textarea.focus();
    this.textarea.setSelectionRange(this.textarea.value.length, this.textarea.value.length);
  }
}
