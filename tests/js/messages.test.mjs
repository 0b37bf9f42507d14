// Never repeat a message, never skip one: messages are kept by seq, the resume cursor only moves forward,
// and unread counts and history paging follow what has arrived.

import assert from "node:assert/strict";
import { test } from "node:test";

import { makeState, message, recorder } from "./support.mjs";

const ROOM = "room:desk";
const seen = { visible: true };

test("a message that arrives twice (live, replay, history) is kept once and counted unread once", (t) => {
  const { state } = makeState(t);
  assert.deepEqual(state.receive(message(5), seen), { key: ROOM, own: false, added: true });
  assert.deepEqual(state.receive(message(5), seen), { key: ROOM, own: false, added: false });
  state.addHistoryPage(state.conversation(ROOM), { messages: [message(6), message(5)], more: false });
  assert.deepEqual(state.conversation(ROOM).sorted().map((m) => m.seq), [5, 6]);
  assert.equal(state.unreadIn(ROOM), 1, "history is not news; the duplicate is not either");
});

test("our message acked and then replayed is kept once", (t) => {
  const { state } = makeState(t);
  state.enqueue(ROOM, "hi");
  state.settleByAck({ id: "id-1", seq: 9, ts: "t" });
  const again = state.receive(message(9, { from: "alice", id: "id-1", text: "hi" }), seen);
  assert.equal(again.added, false);
  assert.equal(state.conversation(ROOM).messages.size, 1);
});

test("messages are listed in seq order whatever order they came in", (t) => {
  const { state } = makeState(t);
  for (const seq of [30, 10, 20]) state.receive(message(seq), seen);
  assert.deepEqual(state.conversation(ROOM).sorted().map((m) => m.seq), [10, 20, 30]);
  assert.equal(state.conversation(ROOM).oldestSeq(), 10);
});

test("what is not a message this client can show is dropped without touching the state", (t) => {
  const { state } = makeState(t);
  assert.equal(state.receive(message("7"), seen), null);
  assert.equal(state.receive(message(7, { text: null }), seen), null);
  assert.equal(state.cursor, null);
  assert.equal(state.conversations.size, 0);
});

test("the cursor only moves forward", (t) => {
  const { state } = makeState(t);
  state.welcome({ seq: 100, contacts: [] }, null);
  assert.equal(state.cursor, 100, "a first connection starts from the server's newest seq");
  state.receive(message(120), seen);
  state.receive(message(110), seen);
  assert.equal(state.cursor, 120);
  state.settleByAck({ id: "x", seq: 115, ts: "t" });
  state.resumed({ until: 118, truncated: false });
  assert.equal(state.cursor, 120);
  state.welcome({ seq: 90, contacts: [] }, 120);
  assert.equal(state.cursor, 120, "a welcome never moves a cursor we have");
  assert.equal(state.advanceCursor(121), true);
  assert.equal(state.advanceCursor(121), false);
  assert.equal(state.advanceCursor(null), false);
  assert.equal(state.cursor, 121);
});

test("an ack during a replay leaves the cursor to `resumed`; history never moves it", (t) => {
  const { state } = makeState(t);
  state.welcome({ seq: 50, contacts: [] }, 40);
  state.settleByAck({ id: "x", seq: 55, ts: "t" });
  assert.equal(state.cursor, 50);
  state.addHistoryPage(state.conversation(ROOM), { messages: [message(70)], more: false });
  assert.equal(state.cursor, 50, "a newer message in history does not mean the replay got that far");
  state.resumed({ until: 60, truncated: false });
  assert.equal(state.cursor, 60);
});

test("a replay cut short forgets every conversation, so history is fetched again", (t) => {
  const { state } = makeState(t);
  state.receive(message(5), seen);
  state.addHistoryPage(state.conversation(ROOM), { messages: [], more: true });
  assert.equal(state.resumed({ until: 9, truncated: false }), false);
  assert.equal(state.conversation(ROOM).messages.size, 1);
  assert.equal(state.resumed({ until: 2000, truncated: true }), true);
  const conversation = state.conversation(ROOM);
  assert.equal(conversation.messages.size, 0);
  assert.deepEqual(conversation.sorted(), []);
  assert.equal(conversation.loaded, false);
  assert.equal(conversation.more, null);
  assert.equal(state.cursor, 2000);
});

test("unread: counted per conversation unless it is open in a page in view; reading says how far", (t) => {
  const { state } = makeState(t);
  state.select(ROOM);
  state.receive(message(1), { visible: true });
  assert.equal(state.unreadIn(ROOM), 0, "open and in view: read as it arrives");
  state.receive(message(2), { visible: false });
  assert.equal(state.unreadIn(ROOM), 1, "open, but the tab is in the background");
  state.receive(message(3, { room: undefined, to: "alice" }), { visible: true });
  state.receive(message(4, { room: undefined, to: "alice", mentions: ["alice"] }), { visible: true });
  assert.equal(state.unreadIn("dm:bob"), 2);
  assert.equal(state.reads.mentionsIn("dm:bob"), 1);
  assert.ok(state.people.has("bob"), "a direct message starts a conversation with its sender");
  state.receive(message(5, { from: "alice", room: undefined, to: "carol" }), { visible: true });
  assert.equal(state.unreadIn("dm:carol"), 0, "what we sent from another tab is not unread");
  assert.ok(state.people.has("carol"));
  assert.equal(state.totalUnread(), 3);
  assert.equal(state.totalUnread((key) => key === "dm:bob"), 1, "muted conversations can be left out");

  state.select("dm:bob");
  assert.equal(state.unreadIn("dm:bob"), 2, "opening is not reading: the page says when it has shown them");
  assert.deepEqual(state.markRead("dm:bob"), { seq: 4 }, "tell the server: read up to 4");
  assert.equal(state.markRead("dm:bob"), null, "nothing new to tell");
  assert.equal(state.unreadIn("dm:bob"), 0);
  assert.equal(state.totalUnread(), 1);
});

test("unread: the server's counts win, from welcome and from read frames sent by any tab", (t) => {
  const { state } = makeState(t);
  state.welcome(
    {
      seq: 40,
      contacts: ["bob"],
      groups: [["carol", "bob"]],
      unread: [
        { room: "desk", seq: 30, unread: 3, mentions: 1, last: 33 },
        { with: "bob", seq: 12, unread: 0, mentions: 0, last: 12 },
        { with: ["bob", "carol"], seq: 0, unread: 2, mentions: 0, last: 40 },
      ],
    },
    20,
  );
  assert.equal(state.unreadIn(ROOM), 3);
  assert.equal(state.unreadIn("group:bob,carol"), 2);
  assert.ok(state.groups.has("group:bob,carol"));
  // The replay brings messages the server had counted already: not counted twice.
  state.receive(message(33), { visible: true });
  assert.equal(state.unreadIn(ROOM), 3);
  state.receive(message(41), { visible: true });
  assert.equal(state.unreadIn(ROOM), 4, "a message after the welcome is news");
  // Another tab read #desk up to 33.
  assert.equal(state.readFrame({ type: "read", room: "desk", seq: 33, unread: 1, mentions: 0, last: 41 }), ROOM);
  assert.equal(state.unreadIn(ROOM), 1);
  assert.equal(state.reads.position(ROOM), 33);
  state.readFrame({ type: "read", room: "desk", seq: 20, unread: 9, mentions: 0, last: 41 });
  assert.equal(state.reads.position(ROOM), 33, "a position never goes back");
});

test("group conversations: keyed by the other members, sent to them as a list", (t) => {
  const { state } = makeState(t);
  const outcome = state.receive(message(7, { room: undefined, members: ["carol", "alice", "bob"] }), seen);
  assert.equal(outcome.key, "group:bob,carol");
  assert.deepEqual(state.conversation("group:bob,carol").frameTarget, { with: ["bob", "carol"] });
  assert.deepEqual(state.conversation("group:bob,carol").target, { with: "bob,carol" });
  state.enqueue("group:bob,carol", "hi both");
  state.queueUnsent(false);
  const send = recorder();
  state.sendQueued(send);
  assert.deepEqual(send.frames[0], { type: "send", id: "id-1", text: "hi both", to: ["bob", "carol"] });
});

test("welcome: contacts become conversations; a `since` means a replay runs until `resumed`", (t) => {
  const { state } = makeState(t);
  state.welcome({ seq: 3, contacts: ["bob", "carol"] }, null);
  assert.equal(state.replaying, false);
  assert.deepEqual([...state.people].sort(), ["bob", "carol"]);
  state.welcome({ seq: 3, contacts: [] }, 3);
  assert.equal(state.replaying, true);
  state.resumed({ until: 3, truncated: false });
  assert.equal(state.replaying, false);
});

test("history paging: newest page first, then pages before the oldest seq held, one at a time", (t) => {
  const { state } = makeState(t);
  const conversation = state.conversation(ROOM);
  assert.deepEqual(conversation.target, { room: "desk" });
  assert.deepEqual(state.conversation("dm:bob").target, { with: "bob" });
  assert.equal(conversation.beginPage(true), null, "older pages are not known to exist yet");
  assert.deepEqual(conversation.beginPage(false), { before: null });
  assert.equal(conversation.beginPage(false), null, "one page on its way at a time");
  state.addHistoryPage(conversation, { messages: [message(40), message(30)], more: true });
  conversation.endPage();
  assert.equal(conversation.loaded, true);

  assert.deepEqual(conversation.beginPage(true), { before: 30 });
  conversation.pageFailed("Could not load older messages.");
  conversation.endPage();
  assert.equal(conversation.error, "Could not load older messages.");
  assert.deepEqual(conversation.beginPage(true), { before: 30 }, "a failed page may be asked for again");
  assert.equal(conversation.error, null, "asking again clears the last error");
  state.addHistoryPage(conversation, { messages: [message(20)], more: false });
  conversation.endPage();
  assert.equal(conversation.beginPage(true), null, "the start of the conversation is reached");
  assert.deepEqual(conversation.sorted().map((m) => m.seq), [20, 30, 40]);
});

test("history the server refuses (403, 404) is not asked for again", (t) => {
  const { state } = makeState(t);
  const conversation = state.conversation("dm:nobody");
  conversation.beginPage(false);
  conversation.pageRefused("no such user");
  conversation.endPage();
  assert.equal(conversation.loaded, true);
  assert.equal(conversation.more, false);
  assert.equal(conversation.error, "no such user");
  assert.equal(conversation.beginPage(true), null);
});
