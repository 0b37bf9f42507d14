// Never lose a message typed here: it stays pending, and is sent again with the same id, until the server
// settles it (docs/protocol.md, "Delivery guarantee").

import assert from "node:assert/strict";
import { test } from "node:test";

import { SEND_BURST, SEND_RATE_PER_S } from "../../static/chatstate.js";
import { makeState, message, recorder } from "./support.mjs";

const ROOM = "room:desk";

test("a message typed is pending, and stored, until its ack; the ack files it under the server's seq", (t) => {
  const { state, storage } = makeState(t);
  const item = state.enqueue(ROOM, "hello");
  assert.equal(item.id, "id-1");
  assert.equal(item.state, "queued");
  const [stored] = Object.values(storage.records());
  assert.deepEqual(stored.pending.map((p) => [p.id, p.text]), [["id-1", "hello"]], "stored at once, before any send");

  const send = recorder();
  assert.equal(state.queueUnsent(false), true);
  state.sendQueued(send);
  assert.deepEqual(send.frames, [{ type: "send", id: "id-1", text: "hello", room: "desk" }]);
  assert.equal(state.findPending("id-1").state, "sent", "sent is not settled: still pending");

  const settled = state.settleByAck({ type: "ack", id: "id-1", seq: 7, ts: "2024-05-01T12:00:01.000Z" });
  assert.deepEqual(settled, { key: ROOM, added: true });
  assert.deepEqual(state.pending, []);
  assert.deepEqual(state.conversation(ROOM).sorted().map((m) => [m.seq, m.from, m.text, m.id, m.room]), [
    [7, "alice", "hello", "id-1", "desk"],
  ]);
  assert.equal(state.cursor, 7, "an ack outside a replay is a seq seen");
  assert.deepEqual(Object.values(storage.records())[0].pending, [], "the settled message is gone from storage");
});

test("a direct message is sent with `to`, and filed under the person once acked", (t) => {
  const { state } = makeState(t);
  state.enqueue("dm:bob", "psst");
  const send = recorder();
  state.queueUnsent(false);
  state.sendQueued(send);
  assert.deepEqual(send.frames, [{ type: "send", id: "id-1", text: "psst", to: "bob" }]);
  state.settleByAck({ id: "id-1", seq: 3, ts: "t" });
  assert.equal(state.conversation("dm:bob").messages.get(3).to, "bob");
});

test("an ack for nothing pending (settled already) changes nothing but the cursor", (t) => {
  const { state } = makeState(t);
  state.enqueue(ROOM, "kept");
  assert.equal(state.settleByAck({ id: "someone-else", seq: 9, ts: "t" }), null);
  assert.deepEqual(state.pending.map((p) => p.id), ["id-1"]);
  assert.equal(state.conversation(ROOM).messages.size, 0);
  assert.equal(state.cursor, 9);
});

test("after the link drops, everything unacked is sent again with the same id", (t) => {
  const { state } = makeState(t);
  state.enqueue(ROOM, "one");
  state.enqueue(ROOM, "two");
  const first = recorder();
  state.queueUnsent(false);
  state.sendQueued(first);
  assert.deepEqual(first.frames.map((f) => f.id), ["id-1", "id-2"]);

  state.linkDown();
  assert.deepEqual(state.pending.map((p) => p.state), ["queued", "queued"]);
  const second = recorder();
  assert.equal(state.queueUnsent(true), true);
  state.sendQueued(second);
  assert.deepEqual(second.frames, first.frames, "the same frames, ids included");
});

test("a send the link refuses goes back to waiting, and the rest of the outbox waits with it", (t) => {
  const { state } = makeState(t);
  state.enqueue(ROOM, "one");
  state.enqueue(ROOM, "two");
  state.queueUnsent(false);
  const down = recorder(false);
  const outcome = state.sendQueued(down);
  assert.deepEqual(outcome, { changed: true, more: true });
  assert.deepEqual(state.pending.map((p) => p.state), ["queued", "sending"]);
  state.linkDown();
  assert.deepEqual(state.outbox, []);
  assert.deepEqual(state.pending.map((p) => p.state), ["queued", "queued"]);
});

test("a message acked while still in the outbox is not sent", (t) => {
  const { state } = makeState(t);
  state.enqueue(ROOM, "one");
  state.queueUnsent(false);
  state.settleByAck({ id: "id-1", seq: 4, ts: "t" });
  const send = recorder();
  assert.deepEqual(state.sendQueued(send), { changed: false, more: false });
  assert.deepEqual(send.frames, []);
});

test("no ack in time: the message shows as failed, is kept, and Retry sends it with its id", (t) => {
  const { state, clock, storage } = makeState(t);
  state.enqueue(ROOM, "lost on the way");
  state.queueUnsent(false);
  state.sendQueued(recorder());
  clock.advance(3_000);
  assert.equal(state.expireUnacked(3_000), false, "not late yet");
  clock.advance(1);
  assert.equal(state.expireUnacked(3_000), true);
  assert.equal(state.findPending("id-1").state, "failed");
  assert.equal(Object.values(storage.records())[0].pending[0].state, "failed", "stored at once");

  assert.equal(state.queueUnsent(false), false, "a failed message waits for Retry or a reconnect");
  assert.equal(state.retry("id-1"), true);
  assert.equal(state.retry("id-1"), false, "only a failed message can be retried");
  const send = recorder();
  state.queueUnsent(false);
  state.sendQueued(send);
  assert.deepEqual(send.frames.map((f) => f.id), ["id-1"]);
});

test("`internal` leaves the message to be tried again with the same id; any other error is final", (t) => {
  const { state } = makeState(t);
  state.enqueue(ROOM, "try again");
  state.enqueue(ROOM, "refused");
  state.queueUnsent(false);
  state.sendQueued(recorder());

  const failed = state.settleByError({ type: "error", code: "internal", message: "database", id: "id-1" });
  assert.equal(failed.state, "failed");
  const rejected = state.settleByError({ type: "error", code: "not_member", message: "you are not a member", id: "id-2" });
  assert.equal(rejected.state, "rejected");
  assert.equal(rejected.error, "you are not a member");
  assert.equal(state.settleByError({ type: "error", code: "rate_limited", message: "slow down" }), null, "no id: not ours");

  state.linkDown();
  const send = recorder();
  state.queueUnsent(true);
  state.sendQueued(send);
  assert.deepEqual(send.frames.map((f) => f.id), ["id-1"], "the rejected one is never sent again");
  assert.equal(state.findPending("id-2").state, "rejected", "shown until the reader deletes it");
  state.discard("id-2");
  assert.equal(state.findPending("id-2"), undefined);
});

test("our own message in a replay settles the pending one with its id (the ack was lost)", (t) => {
  const { state } = makeState(t);
  state.enqueue(ROOM, "did it arrive?");
  state.queueUnsent(false);
  state.sendQueued(recorder());
  state.linkDown();
  state.welcome({ seq: 10, contacts: [] }, 5);
  assert.equal(state.replaying, true);

  const outcome = state.receive(message(8, { from: "alice", id: "id-1", text: "did it arrive?" }), { visible: true });
  assert.deepEqual(outcome, { key: ROOM, own: true, added: true });
  assert.deepEqual(state.pending, []);
  state.resumed({ until: 8, truncated: false });
  assert.equal(state.replaying, false);
  assert.equal(state.queueUnsent(true), false, "nothing left to resend");
  assert.equal(state.unreadIn(ROOM), 0, "our own message is never unread");
});

test("someone else's message carrying the same id settles nothing", (t) => {
  const { state } = makeState(t);
  state.enqueue(ROOM, "mine");
  state.receive(message(8, { from: "bob", id: "id-1" }), { visible: true });
  assert.deepEqual(state.pending.map((p) => p.id), ["id-1"]);
});

test("our own message in a history page settles the pending one with its id", (t) => {
  const { state } = makeState(t);
  state.enqueue("dm:bob", "typed, then reloaded");
  const conversation = state.conversation("dm:bob");
  state.addHistoryPage(conversation, {
    messages: [
      message(12, { from: "alice", to: "bob", room: undefined, id: "id-1", text: "typed, then reloaded" }),
      message(11, { from: "bob", to: "alice", room: undefined, id: "id-1" }),
    ],
    more: false,
  });
  assert.deepEqual(state.pending, []);
  assert.deepEqual(conversation.sorted().map((m) => m.seq), [11, 12]);
});

test("a long queue goes out in a burst, then at the paced rate", (t) => {
  const { state, clock } = makeState(t);
  for (let i = 0; i < SEND_BURST + 5; i++) state.enqueue(ROOM, `m${i}`);
  const send = recorder();
  state.queueUnsent(false);
  assert.deepEqual(state.sendQueued(send), { changed: true, more: true });
  assert.equal(send.frames.length, SEND_BURST);
  assert.deepEqual(state.sendQueued(send), { changed: false, more: true }, "no time has passed: no more tokens");
  clock.advance(1000 / SEND_RATE_PER_S);
  state.sendQueued(send);
  assert.equal(send.frames.length, SEND_BURST + 1);
  clock.advance(1000);
  assert.deepEqual(state.sendQueued(send), { changed: true, more: false });
  assert.deepEqual(
    send.frames.map((f) => f.text),
    state.pending.map((p) => p.text),
    "every message once, in the order typed",
  );
});
