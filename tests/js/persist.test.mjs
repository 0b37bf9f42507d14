// What survives a reload: pending messages with their ids, the cursor, unread counts, the open conversation
// and the people talked to; in the format pages already out there wrote, and never at the cost of an
// exception when what is stored is damaged.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Clock, FakeStorage, makeState, message, recorder } from "./support.mjs";

const TAB_KEY = "tornado-chat/v1/tab";
const PREFIX = "tornado-chat/v1/user/alice/";
const ROOM = "room:desk";

/** Storage holding one record for alice's tab "tab1", as a page would have written it. */
function storedRecord(record, clock = new Clock()) {
  const storage = new FakeStorage({ [`${PREFIX}tab1`]: typeof record === "string" ? record : JSON.stringify(record) });
  const tabStorage = new FakeStorage({ [TAB_KEY]: "tab1" });
  return { storage, tabStorage, clock };
}

test("a reload finds what it left: pending messages with their ids and states, cursor, open, people", (t) => {
  const before = makeState(t);
  const { state, storage, tabStorage, clock } = before;
  state.begin();
  state.welcome({ seq: 10, contacts: ["carol"] }, null);
  state.select(ROOM);
  state.enqueue(ROOM, "queued one");
  state.enqueue("dm:bob", "sent one");
  state.enqueue(ROOM, "refused one");
  state.queueUnsent(false);
  state.sendQueued(recorder());
  state.settleByError({ code: "too_long", message: "too long", id: "id-3" });
  state.receive(message(12, { room: "other" }), { visible: true });
  state.writeNow(); // the page's pagehide

  const after = makeState(t, { storage, tabStorage, clock }).state;
  assert.equal(after.cursor, 12);
  assert.deepEqual(
    after.pending.map(({ id, key, text, state: s, error }) => [id, key, text, s, error]),
    [
      ["id-1", ROOM, "queued one", "queued", null],
      ["id-2", "dm:bob", "sent one", "queued", null],
      ["id-3", ROOM, "refused one", "rejected", "too long"],
    ],
    "what was in flight waits for the link again; a refusal stays final",
  );
  assert.deepEqual(after.pending.map((p) => p.ts), state.pending.map((p) => p.ts));
  assert.equal(after.totalUnread(), 0, "unread counts are the server's: they come with the next welcome");
  assert.equal(after.openKey, ROOM);
  assert.deepEqual([...after.people].sort(), ["bob", "carol"]);

  const send = recorder();
  after.welcome({ seq: 12, contacts: [] }, 12);
  after.resumed({ until: 12, truncated: false });
  after.queueUnsent(true);
  after.sendQueued(send);
  assert.deepEqual(send.frames.map((f) => f.id), ["id-1", "id-2"], "resent after the reload with their ids");
});

test("the record keeps its key and format, so an upgraded page reads what the old one stored", (t) => {
  const { state, storage, tabStorage } = makeState(t);
  state.enqueue(ROOM, "hello");
  const tab = tabStorage.getItem(TAB_KEY);
  assert.match(tab, /^[0-9a-f]{12}$/);
  assert.deepEqual([...storage.data.keys()], [`${PREFIX}${tab}`]);
  const record = JSON.parse(storage.getItem(`${PREFIX}${tab}`));
  assert.deepEqual(Object.keys(record), ["cursor", "pending", "unread", "open", "people", "savedAt"]);
  assert.deepEqual(record.pending, [
    { id: "id-1", key: ROOM, text: "hello", ts: "2024-05-01T12:00:00.000Z", state: "queued", error: null },
  ]);
  assert.equal(record.savedAt, Date.parse("2024-05-01T12:00:00Z"));

  // Written by the page before this module existed.
  const old = storedRecord({
    cursor: 41,
    pending: [
      { id: "4f2a9c", key: "dm:bob", text: "still here?", ts: "2024-04-30T08:00:00.000Z", state: "sent", error: null },
    ],
    unread: { "room:general": 3 },
    open: "room:general",
    people: ["bob"],
    savedAt: Date.parse("2024-04-30T08:00:01Z"),
  });
  const upgraded = makeState(t, old).state;
  assert.equal(upgraded.cursor, 41);
  assert.deepEqual(upgraded.pending.map((p) => [p.id, p.text, p.state]), [["4f2a9c", "still here?", "queued"]]);
  assert.equal(upgraded.unreadIn("room:general"), 0, "what an old page counted is ignored: the server counts");
  assert.equal(upgraded.openKey, "room:general");
});

test("a user whose name needs escaping gets a record key of its own", (t) => {
  const { state, storage } = makeState(t, { user: "a/b" });
  state.enqueue(ROOM, "x");
  assert.ok([...storage.data.keys()][0].startsWith("tornado-chat/v1/user/a%2Fb/"));
});

test("a record that is not JSON, or not an object, is ignored and then replaced", (t) => {
  for (const damaged of ["{not json", "42", "null", '"text"', "[1, 2]"]) {
    const { storage, tabStorage, clock } = storedRecord(damaged);
    const { state } = makeState(t, { storage, tabStorage, clock });
    assert.equal(state.cursor, null, damaged);
    assert.deepEqual(state.pending, [], damaged);
    assert.equal(state.totalUnread(), 0, damaged);
    state.enqueue(ROOM, "after");
    assert.equal(JSON.parse(storage.getItem(`${PREFIX}tab1`)).pending[0].text, "after", damaged);
  }
});

test("parts of the wrong shape are ignored, and so is every entry a page could not have written", (t) => {
  const wrongShapes = storedRecord({ cursor: "12", pending: "oops", unread: null, open: 5, people: 7 });
  const shapes = makeState(t, wrongShapes).state;
  assert.equal(shapes.cursor, null);
  assert.deepEqual(shapes.pending, []);
  assert.equal(shapes.totalUnread(), 0);
  assert.equal(shapes.openKey, null);
  assert.deepEqual([...shapes.people], []);

  const wrongEntries = storedRecord({
    cursor: 7.5,
    pending: [
      null,
      42,
      { id: 1, key: ROOM, text: "numeric id" },
      { id: "a", key: "lobby:x", text: "unknown kind" },
      { id: "b", key: ROOM },
      { id: "c", key: "dm:dave", text: "kept", ts: "yesterday", state: "weird", error: 5 },
    ],
    unread: { "room:desk": 2, "room:neg": -1, "room:half": 1.5, "room:text": "3", junk: 4 },
    open: "nonsense",
    people: ["bob", 5, null],
  });
  const entries = makeState(t, wrongEntries).state;
  assert.equal(entries.cursor, null);
  assert.equal(entries.pending.length, 1);
  const [kept] = entries.pending;
  assert.deepEqual([kept.id, kept.key, kept.text, kept.state, kept.error], ["c", "dm:dave", "kept", "queued", null]);
  assert.equal(kept.ts, "2024-05-01T12:00:00.000Z", "an unreadable time is replaced, the text is kept");
  assert.equal(entries.totalUnread(), 0);
  assert.equal(entries.openKey, null);
  assert.deepEqual([...entries.people].sort(), ["bob", "dave"], "valid names, and whoever a pending message is for");
});

test("storage that is full, or missing, costs persistence and nothing else", (t) => {
  const full = makeState(t);
  full.storage.full = true;
  const item = full.state.enqueue(ROOM, "kept in memory");
  assert.equal(full.state.findPending(item.id).text, "kept in memory");
  assert.equal(full.storage.length, 0);

  const none = makeState(t, { storage: null, tabStorage: null });
  none.state.enqueue(ROOM, "no storage");
  none.state.writeNow();
  none.state.end({ keep: true });
  assert.equal(none.state.pending.length, 1);
});

test("a closed tab's unsent messages are adopted and its record removed; a live tab's are left alone", (t) => {
  const clock = new Clock();
  const now = clock.now();
  const typed = { id: "m1", key: ROOM, text: "mine", ts: "2024-05-01T11:00:02.000Z", state: "queued", error: null };
  const mine = { cursor: null, pending: [typed], unread: { "room:desk": 1 }, open: null, people: [], savedAt: now - 1_000 };
  const closed = {
    cursor: 30,
    pending: [
      typed,
      { id: "c1", key: "dm:bob", text: "from the closed tab", ts: "2024-05-01T11:00:01.000Z", state: "sent", error: null },
    ],
    unread: { "room:desk": 4, "dm:bob": 1 },
    open: "dm:bob",
    people: ["carol"],
    savedAt: now - 31_000,
  };
  const liveItem = { id: "l1", key: ROOM, text: "the live tab's", ts: "x", state: "queued", error: null };
  const live = { ...closed, pending: [liveItem], savedAt: now - 5_000 };
  const storage = new FakeStorage({
    [`${PREFIX}mine`]: JSON.stringify(mine),
    [`${PREFIX}closed`]: JSON.stringify(closed),
    [`${PREFIX}live`]: JSON.stringify(live),
    [`${PREFIX}broken`]: "{",
    "tornado-chat/v1/user/bob/closed": JSON.stringify(closed),
  });
  const { state } = makeState(t, { storage, tabStorage: new FakeStorage({ [TAB_KEY]: "mine" }), clock });

  assert.deepEqual(state.pending.map((p) => p.id), ["c1", "m1"], "each id once, oldest first");
  assert.equal(state.cursor, 30, "no cursor of our own: the closed tab's");
  assert.equal(state.totalUnread(), 0, "a closed tab's counts are not adopted: the server's come with welcome");
  assert.equal(state.openKey, null, "the open conversation is this tab's own");
  assert.deepEqual([...state.people].sort(), ["bob", "carol"]);
  assert.deepEqual(
    [...storage.data.keys()].sort(),
    [`${PREFIX}live`, `${PREFIX}mine`, "tornado-chat/v1/user/bob/closed"],
    "closed and unreadable records of alice's are gone; the live tab's and bob's stay",
  );
});

test("each tab writes its own record; a reload of the tab finds it again", (t) => {
  const storage = new FakeStorage();
  const tabA = new FakeStorage();
  const a = makeState(t, { storage, tabStorage: tabA }).state;
  const b = makeState(t, { storage, tabStorage: new FakeStorage() }).state;
  a.enqueue(ROOM, "from a");
  b.enqueue(ROOM, "from b");
  assert.equal(storage.length, 2);
  const reloaded = makeState(t, { storage, tabStorage: tabA }).state;
  assert.deepEqual(reloaded.pending.map((p) => p.text), ["from a"], "b's tab is alive: its queue stays its own");
});

test("logged out on purpose forgets the record; logged out by the server keeps it for the next login", (t) => {
  const kept = makeState(t);
  kept.state.begin();
  kept.state.enqueue(ROOM, "wait for me");
  kept.state.advanceCursor(77); // written later, at the latest when the chat ends
  kept.state.end({ keep: true });
  const [record] = Object.values(kept.storage.records());
  assert.equal(record.cursor, 77);
  assert.deepEqual(record.pending.map((p) => p.text), ["wait for me"]);
  kept.state.writeNow();
  assert.equal(Object.values(kept.storage.records())[0].cursor, 77);

  const forgotten = makeState(t);
  forgotten.state.begin();
  forgotten.state.enqueue(ROOM, "never mind");
  forgotten.state.end({ keep: false });
  assert.equal(forgotten.storage.length, 0);
  forgotten.state.writeNow();
  assert.equal(forgotten.storage.length, 0, "nothing writes the record back after a log out");
});
