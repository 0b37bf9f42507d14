// Rooms, roles, edits and deletes in the page's DOM-free state (static/moderation.js): which buttons to offer,
// how a room's state is kept, and how `edited`/`deleted` frames change what a conversation holds.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  applyChange,
  applyMemberEvent,
  applyRoomState,
  canDelete,
  canEdit,
  canManageRoles,
  canModerate,
  canRemove,
  lastEditable,
  newRoom,
  roleOf,
} from "../../static/moderation.js";
import { makeState, message } from "./support.mjs";

const ROOM = "room:desk";
const seen = { visible: true };

function deskWith(roles, banned = null) {
  const room = newRoom("desk");
  const members = ["alice", "bob", "carol", "dave"];
  applyRoomState(room, { type: "room", room: "desk", members, online: members, private: true, topic: "t", roles, banned }, "alice");
  return room;
}

test("a room's state comes from joined and room frames, and member events keep it up to date", () => {
  const room = deskWith({ alice: "owner", bob: "moderator" }, ["mallory"]);
  assert.equal(room.member, true);
  assert.equal(room.private, true);
  assert.deepEqual([roleOf(room, "alice"), roleOf(room, "bob"), roleOf(room, "carol"), roleOf(room, "eve")], [
    "owner",
    "moderator",
    "member",
    null,
  ]);
  assert.equal(applyMemberEvent(room, { event: "invited", user: "eve", count: 5 }), true);
  assert.equal(roleOf(room, "eve"), "member");
  assert.equal(applyMemberEvent(room, { event: "banned", user: "bob", count: 4 }), false);
  assert.equal(roleOf(room, "bob"), null, "a removed member loses the role with the membership");
  assert.deepEqual(room.banned, ["mallory", "bob"]);
  applyRoomState(room, { type: "room", room: "desk", members: ["bob"], online: [], roles: {} }, "alice");
  assert.equal(room.member, false);
  assert.equal(room.banned, null, "only moderators are told who is banned");
});

test("the buttons offered follow the roles: moderators remove members, owners hand out roles, admins all", () => {
  const room = deskWith({ alice: "owner", bob: "moderator" });
  assert.equal(canModerate(room, "carol", false), false);
  assert.equal(canModerate(room, "bob", false), true);
  assert.equal(canRemove(room, "bob", "carol", false), true);
  assert.equal(canRemove(room, "bob", "alice", false), false, "not the owner");
  assert.equal(canRemove(room, "bob", "bob", false), false, "not oneself");
  assert.equal(canManageRoles(room, "bob", false), false);
  assert.equal(canManageRoles(room, "alice", false), true);
  assert.equal(canRemove(room, "eve", "alice", true), true, "an admin outranks the owner, member or not");
});

test("only the author edits; the author, the room's moderators and admins delete; tombstones are final", () => {
  const room = deskWith({ alice: "owner", bob: "moderator" });
  const mine = { seq: 3, from: "carol", room: "desk" };
  assert.equal(canEdit(mine, "carol"), true);
  assert.equal(canEdit(mine, "bob"), false);
  assert.equal(canDelete(mine, "carol", room, false), true);
  assert.equal(canDelete(mine, "bob", room, false), true);
  assert.equal(canDelete(mine, "dave", room, false), false);
  assert.equal(canDelete({ seq: 4, from: "carol", to: "dave" }, "bob", null, true), false, "nobody else deletes a direct message");
  assert.equal(canDelete({ ...mine, deleted: true }, "carol", room, false), false);
  assert.equal(canEdit({ from: "carol", text: "pending" }, "carol"), false, "not before the server stored it");
});

test("edited and deleted frames change the message held, once, and move the cursor", (t) => {
  const { state } = makeState(t);
  state.receive(message(5, { from: "alice", id: "x" }), seen);
  state.receive(message(6, { text: "bob's" }), seen);
  const edited = { type: "edited", seq: 5, rev: 9, from: "alice", room: "desk", text: "fixed", edited: "2024-05-01T12:01:00.000Z" };
  assert.deepEqual(applyChange(state, edited), { key: ROOM, changed: true });
  assert.equal(state.conversation(ROOM).messages.get(5).text, "fixed");
  assert.equal(state.conversation(ROOM).messages.get(5).edited, edited.edited);
  assert.equal(state.cursor, 9, "a change's position is a resume point like a seq");
  assert.deepEqual(applyChange(state, edited), { key: ROOM, changed: false }, "a replay of it changes nothing");
  assert.deepEqual(applyChange(state, { ...edited, rev: 8, text: "older" }), { key: ROOM, changed: false });
  const deleted = { type: "deleted", seq: 6, rev: 10, from: "bob", room: "desk" };
  assert.deepEqual(applyChange(state, deleted), { key: ROOM, changed: true });
  const tombstone = state.conversation(ROOM).messages.get(6);
  assert.equal(tombstone.deleted, true);
  assert.equal(tombstone.text, "", "a tombstone keeps no text");
  assert.deepEqual(state.conversation(ROOM).sorted().map((m) => m.seq), [5, 6], "and no seq goes missing");
  assert.deepEqual(applyChange(state, { ...deleted, seq: 99, rev: 11 }), { key: ROOM, changed: false }, "not held: history has it");
  assert.equal(state.cursor, 11);
  assert.equal(applyChange(state, { type: "edited", seq: "5", rev: 12 }), null);
});

test("a direct conversation's change lands in the conversation with the other person", (t) => {
  const { state } = makeState(t);
  state.receive(message(7, { from: "bob", room: undefined, to: "alice" }), seen);
  const outcome = applyChange(state, { type: "edited", seq: 7, rev: 8, from: "bob", to: "alice", text: "hm" });
  assert.deepEqual(outcome, { key: "dm:bob", changed: true });
});

test("Up arrow picks our newest message that can still be edited", (t) => {
  const { state } = makeState(t);
  const conversation = state.conversation(ROOM);
  assert.equal(lastEditable(conversation, "alice"), null);
  state.receive(message(1, { from: "alice", id: "a" }), seen);
  state.receive(message(2, { from: "alice", id: "b" }), seen);
  state.receive(message(3), seen);
  assert.equal(lastEditable(conversation, "alice").seq, 2);
  applyChange(state, { type: "deleted", seq: 2, rev: 4, from: "alice", room: "desk" });
  assert.equal(lastEditable(conversation, "alice").seq, 1, "not a deleted one");
});
