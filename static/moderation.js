// Rooms, roles, moderation, edits and deletes, with no page in it: who may do what in a room, a room's
// state as the server describes it, and how an `edited` or `deleted` frame changes what a conversation
// holds. roomview.js draws it; Node's test runner drives it directly (tests/js/).
//
// The server decides every action (docs/protocol.md): these rules only choose which buttons to offer.

import { keyOfMessage } from "./chatstate.js";
import { mentionsMe } from "./readstate.js";

export const OWNER = "owner";
export const MODERATOR = "moderator";

const RANKS = { member: 1, moderator: 2, owner: 3 };
const ADMIN_RANK = 4;

/** A room as the page keeps it, before the server has said anything about it. */
export function newRoom(name) {
  return { name, members: 0, online: 0, member: false, names: null, private: false, topic: "", roles: {}, banned: null };
}

/** Take a room's state from a `joined` or `room` frame (`banned` comes only to its moderators). */
export function applyRoomState(room, frame, me) {
  room.member = frame.members.includes(me);
  room.members = frame.members.length;
  room.names = new Set(frame.members);
  room.online = frame.online.length;
  room.private = Boolean(frame.private);
  room.topic = typeof frame.topic === "string" ? frame.topic : "";
  room.roles = frame.roles && typeof frame.roles === "object" ? { ...frame.roles } : {};
  room.banned = Array.isArray(frame.banned) ? [...frame.banned] : null;
}

/** A `member` event: who came in (joined, invited) or went (left, kicked, banned). @returns {boolean} in */
export function applyMemberEvent(room, frame) {
  room.members = frame.count;
  const came = frame.event === "joined" || frame.event === "invited";
  if (came) room.names?.add(frame.user);
  else {
    room.names?.delete(frame.user);
    delete room.roles[frame.user];
  }
  if (frame.event === "banned" && room.banned && !room.banned.includes(frame.user)) room.banned.push(frame.user);
  return came;
}

/** `owner`, `moderator` or `member` for a member of `room`; null for anyone else. */
export function roleOf(room, name) {
  if (!room.names?.has(name)) return null;
  return room.roles[name] ?? "member";
}

/** The rank of `name` acting in `room`: an admin's is above every room role. */
export function rankOf(room, name, admin = false) {
  if (admin) return ADMIN_RANK;
  const role = roleOf(room, name);
  return role ? RANKS[role] ?? RANKS.member : 0;
}

/** May `me` invite, kick, ban, unban and set the topic here? */
export function canModerate(room, me, admin) {
  return rankOf(room, me, admin) >= RANKS.moderator;
}

/** May `me` hand out roles here (promote, demote, transfer)? */
export function canManageRoles(room, me, admin) {
  return rankOf(room, me, admin) >= RANKS.owner;
}

/** May `me` kick or ban `target` here: a moderator's rank, above the target's. */
export function canRemove(room, me, target, admin) {
  const rank = rankOf(room, me, admin);
  return target !== me && rank >= RANKS.moderator && rank > rankOf(room, target);
}

/** May `me` delete this message: their own, or, as a room's moderator or an admin, anyone's in the room. */
export function canDelete(message, me, room, admin) {
  if (message.deleted || !Number.isInteger(message.seq)) return false;
  if (message.from === me) return true;
  return Boolean(message.room && room && canModerate(room, me, admin));
}

/** Only the author edits. */
export function canEdit(message, me) {
  return message.from === me && !message.deleted && Number.isInteger(message.seq);
}

/** The newest message of `me` in a conversation that can still be edited (what Up arrow picks), or null. */
export function lastEditable(conversation, me) {
  const sorted = conversation.sorted();
  for (let index = sorted.length - 1; index >= 0; index--) {
    if (canEdit(sorted[index], me)) return sorted[index];
  }
  return null;
}

/**
 * An `edited` or `deleted` frame: the message it names takes its new state, if this page holds it (history
 * brings the current state of the others). Its `rev` is a position, like a seq, so the cursor moves to it.
 * An edit brings the new text's mentions (highlighted, never notified again); a tombstone mentions nobody.
 * The unread mention count follows, as the server's does, when the message is still unread.
 * @param {import("./chatstate.js").ChatState} state
 * @returns {{key: string, changed: boolean} | null} null when the frame is not one this client can use
 */
export function applyChange(state, frame) {
  if (!Number.isInteger(frame.seq) || !Number.isInteger(frame.rev)) return null;
  if (frame.rev > 0) state.advanceCursor(frame.rev);
  const key = keyOfMessage(frame, state.me);
  const conversation = state.conversations.get(key);
  const held = conversation?.messages.get(frame.seq);
  if (!held || (held.rev ?? 0) >= frame.rev) return { key, changed: false };
  const next = { ...held, rev: frame.rev };
  if (frame.type === "deleted") {
    next.text = "";
    next.deleted = true;
    delete next.edited;
    delete next.mentions;
  } else {
    if (typeof frame.text !== "string") return null;
    next.text = frame.text;
    if (frame.edited) next.edited = frame.edited;
    if (Array.isArray(frame.mentions)) next.mentions = [...frame.mentions];
    else delete next.mentions;
  }
  conversation.messages.set(frame.seq, next);
  conversation.sortedCache = null;
  if (held.from !== state.me) state.reads.mentionChanged(key, frame.seq, mentionsMe(held, state.me), mentionsMe(next, state.me));
  return { key, changed: true };
}
