// Edits and deletes meet the day-one page state: a change in a group conversation lands in it, an edit's
// mentions replace the old ones and move the unread mention count while the message is unread, a tombstone
// mentions nobody, and an edit borrows the message box without touching the draft or saying "typing".

import assert from "node:assert/strict";
import { test } from "node:test";

import { groupKey } from "../../static/chatstate.js";
import { Composer } from "../../static/composer.js";
import { applyChange } from "../../static/moderation.js";
import { Prefs } from "../../static/prefs.js";
import { mentionsMe } from "../../static/readstate.js";
import { TypingState } from "../../static/typingstate.js";
import { Clock, FakeStorage, makeState, message } from "./support.mjs";

const GROUP = groupKey(["bob", "carol"]);
const MEMBERS = ["alice", "bob", "carol"];
const unseen = { visible: false };

test("a group message's edit and delete land in the group, with its mentions and counts", (t) => {
  const { state } = makeState(t);
  state.readFrame({ with: ["bob", "carol"], seq: 0, unread: 0, mentions: 0, last: 0 });
  state.receive(message(4, { from: "bob", room: undefined, members: MEMBERS, text: "hello all" }), unseen);
  state.receive(message(5, { from: "carol", room: undefined, members: MEMBERS, text: "@alice look", mentions: ["alice"] }), unseen);
  assert.deepEqual([state.reads.unreadIn(GROUP), state.reads.mentionsIn(GROUP)], [2, 1]);

  const edited = { type: "edited", seq: 4, rev: 6, from: "bob", members: MEMBERS, text: "hello @alice", mentions: ["alice"] };
  assert.deepEqual(applyChange(state, edited), { key: GROUP, changed: true });
  const held = state.conversation(GROUP).messages.get(4);
  assert.equal(held.text, "hello @alice");
  assert.ok(mentionsMe(held, "alice"), "an edit's mentions replace the old ones (the page highlights them)");
  assert.equal(state.reads.mentionsIn(GROUP), 2, "still unread: the new mention counts, as on the server");

  assert.deepEqual(applyChange(state, { type: "deleted", seq: 5, rev: 7, from: "carol", members: MEMBERS }), { key: GROUP, changed: true });
  const tombstone = state.conversation(GROUP).messages.get(5);
  assert.equal(tombstone.deleted, true);
  assert.equal(mentionsMe(tombstone, "alice"), false, "a tombstone mentions nobody");
  assert.deepEqual([state.reads.unreadIn(GROUP), state.reads.mentionsIn(GROUP)], [2, 1], "a deleted message is still unread");

  // Read up to both: later edits move no counts.
  state.reads.readUpTo(GROUP, 7);
  applyChange(state, { ...edited, rev: 8, text: "hello", mentions: undefined });
  assert.deepEqual([state.reads.unreadIn(GROUP), state.reads.mentionsIn(GROUP)], [0, 0]);
  assert.equal(mentionsMe(state.conversation(GROUP).messages.get(4), "alice"), false);
  assert.equal(state.cursor, 8);
});

test("our own message edited to mention us counts nothing", (t) => {
  const { state } = makeState(t);
  state.readFrame({ room: "desk", seq: 0, unread: 0, mentions: 0, last: 0 });
  state.receive(message(3, { from: "alice", text: "note" }), unseen);
  applyChange(state, { type: "edited", seq: 3, rev: 4, from: "alice", room: "desk", text: "note @alice", mentions: [] });
  assert.equal(state.reads.mentionsIn("room:desk"), 0);
});

function box() {
  const textarea = { value: "", focus() {}, setSelectionRange() {}, setAttribute(name, value) { this[name] = value; } };
  const counter = { hidden: true, textContent: "", classList: { toggle() {} } };
  const sendButton = { disabled: false };
  const tab = new FakeStorage();
  const prefs = new Prefs("alice", { storage: new FakeStorage(), tabStorage: tab });
  const typed = [];
  const composer = new Composer({
    textarea,
    counter,
    sendButton,
    prefs,
    typing: new TypingState(new Clock().now),
    sendTyping: (key) => typed.push(key),
  });
  return { composer, textarea, sendButton, prefs, typed };
}

test("an edit borrows the message box: the draft waits aside, nobody hears typing, the length is counted", () => {
  const { composer, textarea, sendButton, prefs, typed } = box();
  composer.setLimit(5);
  composer.switchTo("room:desk");
  textarea.value = "half";
  composer.input();
  assert.deepEqual(typed, ["room:desk"]);
  composer.beginEdit("old text");
  assert.equal(textarea.value, "old text");
  assert.equal(sendButton.disabled, true, "too long for the limit: counted as a new message would be");
  textarea.value = "😀😀😀";
  composer.input();
  assert.equal(sendButton.disabled, false, "three emoji are three characters");
  assert.equal(prefs.draft("room:desk"), "half", "the edit is not the draft");
  assert.deepEqual(typed, ["room:desk"], "editing says nothing about typing");
  composer.endEdit();
  assert.equal(textarea.value, "half", "the draft comes back");
  composer.beginEdit("again");
  composer.switchTo("dm:bob"); // opening another conversation ends the edit, and keeps the draft
  assert.equal(prefs.draft("room:desk"), "half");
  assert.equal(composer.editing, null);
  composer.switchTo("room:desk");
  assert.equal(textarea.value, "half");
});
