// The page's part of rooms, roles and moderation: new rooms (public or private), the member list with roles
// and its kick, ban and role buttons, invites, the topic, the ban list, and editing and deleting messages
// (Up arrow edits your last one, as Slack does; deletes ask first). chat.js calls in here; who may do what
// is decided in moderation.js (and, for real, by the server).
// Text is only ever put in the page as text (dom.js): never parsed as HTML.

import { roomKey } from "./chatstate.js";
import { $, h } from "./dom.js";
import {
  canDelete,
  canEdit,
  canManageRoles,
  canModerate,
  canRemove,
  lastEditable,
  MODERATOR,
  OWNER,
  rankOf,
  roleOf,
} from "./moderation.js";

/** A frame that answers with its id: moderation actions, edits and deletes. @returns {string | null} the id */
function sendAction(chat, frame, what) {
  const id = `act-${++chat.actionCount}`;
  if (!chat.send({ ...frame, id })) {
    chat.notice("Not connected: try again in a moment.");
    return null;
  }
  chat.actions.set(id, { ...what, frame });
  return id;
}

/**
 * After a reconnect: send again, with their ids, the edits and deletes the server has not answered. The server
 * makes each once however often it gets it (docs/protocol.md), so one that did arrive changes nothing.
 */
export function resendChanges(chat) {
  for (const [id, what] of chat.actions) {
    if (what.kind === "edit" || what.kind === "delete") chat.send({ ...what.frame, id });
  }
}

/**
 * An error frame answering one of our actions: shown where the action came from.
 * @returns {boolean} it was ours
 */
export function actionFailed(chat, error) {
  const what = chat.actions.get(error.id);
  if (!what) return false;
  chat.actions.delete(error.id);
  if (what.kind === "create") $("room-error").textContent = error.message;
  else if (what.kind === "edit") chat.editor.failed(error);
  else if (what.kind === "tools") $("room-tools-error").textContent = error.message;
  else chat.notice(error.message);
  return true;
}

/** Any frame carrying the id of one of our actions: it was done. @returns {object | null} what it was */
export function actionAnswered(chat, frame) {
  if (frame.id === undefined || !chat.actions.has(frame.id)) return null;
  const what = chat.actions.get(frame.id);
  chat.actions.delete(frame.id);
  return what;
}

// ------------------------------------------------------------ confirmations

/** Ask in the page's own dialog (never window.confirm); resolves true when the reader confirms. */
export function confirmAction(question, detail, action) {
  const dialog = $("confirm-dialog");
  $("confirm-title").textContent = question;
  $("confirm-text").textContent = detail;
  $("confirm-ok").textContent = action;
  return new Promise((resolve) => {
    const done = () => {
      dialog.removeEventListener("close", done);
      resolve(dialog.returnValue === "confirm");
    };
    dialog.returnValue = "";
    dialog.addEventListener("close", done);
    dialog.showModal();
  });
}

// ------------------------------------------------------------ rooms

/** The sidebar entry's extra words for a private room. */
export const privateLabel = (room) => (room.private ? ", private" : "");

/** Ask the server for a new room; it opens once the server has made it. */
export function createRoom(chat, name, topic, isPrivate) {
  $("room-error").textContent = "";
  if (!/^[a-z0-9_-]{1,64}$/.test(name)) {
    $("room-error").textContent = "Room names are 1-64 characters: a-z, 0-9, - and _.";
    return;
  }
  sendAction(chat, { type: "create", room: name, private: isPrivate, topic }, { kind: "create", room: name });
}

/** A member of the open room, with their role, and the buttons the reader may use on them. */
export function memberEntry(chat, room, name, online) {
  const role = roleOf(room, name);
  const mayRemove = canRemove(room, chat.me, name, chat.admin);
  const mayPromote = canManageRoles(room, chat.me, chat.admin) && name !== chat.me && role !== OWNER;
  return {
    key: name,
    sig: `${online}|${role}|${mayRemove}|${mayPromote}`,
    create: () => {
      const label = h(
        "span",
        { class: "member" },
        h("span", { class: `presence ${online ? "online" : "offline"}`, "aria-hidden": "true" }),
        name === chat.me ? `${name} (you)` : name,
        role === OWNER || role === MODERATOR ? h("span", { class: `role role-${role}` }, role) : null,
        h("span", { class: "visually-hidden" }, online ? ", online" : ", offline"),
      );
      const item = h("li", { class: "member-row", dataset: { member: name } });
      if (name === chat.me) item.append(label);
      else item.append(h("button", { type: "button", class: "member-button", title: `Message ${name}`, onclick: () => chat.messageMember(name) }, label));
      const actions = h("span", { class: "member-actions" });
      const act = (text, onclick) => actions.append(h("button", { type: "button", class: "small quiet", "aria-label": `${text} ${name}`, onclick }, text));
      if (mayPromote) {
        if (role === MODERATOR) act("Demote", () => roomAction(chat, "demote", room, name));
        else act("Promote", () => roomAction(chat, "promote", room, name));
      }
      if (mayRemove) {
        act("Kick", () => removeMember(chat, "kick", room, name));
        act("Ban", () => removeMember(chat, "ban", room, name));
      }
      if (actions.childElementCount) item.append(actions);
      return item;
    },
  };
}

function roomAction(chat, type, room, user) {
  $("room-tools-error").textContent = "";
  sendAction(chat, { type, room: room.name, user }, { kind: "tools" });
}

async function removeMember(chat, type, room, user) {
  const question = type === "ban" ? `Ban ${user} from #${room.name}?` : `Remove ${user} from #${room.name}?`;
  const detail = type === "ban" ? "They cannot come back until unbanned." : room.private ? "They can come back only if invited again." : "They can join again.";
  if (await confirmAction(question, detail, type === "ban" ? "Ban" : "Kick")) roomAction(chat, type, room, user);
}

/** The owner's and moderators' tools in the member list: invite, topic, who is banned. */
export function renderRoomTools(chat, room) {
  const tools = $("room-tools");
  const allowed = room.member && canModerate(room, chat.me, chat.admin);
  tools.hidden = !allowed;
  if (!allowed) return;
  const topic = $("topic-text");
  if (document.activeElement !== topic) topic.value = room.topic;
  const banned = room.banned ?? [];
  $("banned-heading").hidden = banned.length === 0;
  $("banned-list").replaceChildren(
    ...banned.map((name) =>
      h(
        "li",
        { class: "member-row" },
        h("span", { class: "member" }, name),
        h("button", { type: "button", class: "small quiet", "aria-label": `Unban ${name}`, onclick: () => roomAction(chat, "unban", room, name) }, "Unban"),
      ),
    ),
  );
}

/** Wire the new-room dialog, the confirm dialog and the tools' forms; `current` gives the chat, if any. */
export function bindRoomControls(current) {
  const dialog = $("room-dialog");
  $("new-room-button").addEventListener("click", () => {
    $("room-error").textContent = "";
    $("new-room-name").value = "";
    $("new-room-topic").value = "";
    $("new-room-private").checked = false;
    dialog.showModal();
  });
  $("room-cancel").addEventListener("click", () => dialog.close());
  $("room-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const chat = current();
    const name = $("new-room-name").value.trim().replace(/^#/, "").toLowerCase();
    if (chat) createRoom(chat, name, $("new-room-topic").value.trim(), $("new-room-private").checked);
  });
  $("confirm-cancel").addEventListener("click", () => $("confirm-dialog").close(""));
  $("confirm-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("confirm-dialog").close("confirm");
  });
  $("invite-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const chat = current();
    const room = chat?.open?.kind === "room" ? chat.room(chat.open.name) : null;
    const name = $("invite-name").value.trim().replace(/^@/, "");
    if (!room || !name) return;
    roomAction(chat, "invite", room, name);
    $("invite-name").value = "";
  });
  $("topic-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const chat = current();
    if (chat?.open?.kind !== "room") return;
    $("room-tools-error").textContent = "";
    sendAction(chat, { type: "topic", room: chat.open.name, topic: $("topic-text").value.trim() }, { kind: "tools" });
  });
}

/** A room the server made for us (a `joined` answering our `create`): close the dialog and open it. */
export function roomCreated(chat, frame) {
  $("room-dialog").close();
  chat.openConversation(roomKey(frame.room));
}

// ------------------------------------------------------------ messages

/**
 * The text of a message as shown, its Markdown rendered by `render` (text → nodes), edited or not; a
 * tombstone says so, without the text it had.
 */
export function messageText(entry, render) {
  if (entry.deleted) return h("p", { class: "text deleted" }, "message deleted");
  return h("div", { class: "text", dir: "auto" }, render(entry.text));
}

/** The "edited" marker, with when, for an edited message. */
export function editedMark(entry) {
  if (!entry.edited || entry.deleted) return null;
  const when = new Date(entry.edited);
  return h("span", { class: "edited", title: `edited ${when.toLocaleString()}` }, "edited");
}

/** What decides which Edit and Delete buttons a conversation's messages show: the reader's rank in it. */
export function rightsIn(chat, conversation) {
  return conversation.kind === "room" ? rankOf(chat.room(conversation.name), chat.me, chat.admin) : 0;
}

/** Edit and Delete buttons on a stored message, for whoever may use them. */
export function messageActions(chat, entry) {
  if (!entry.seq || entry.deleted) return null;
  const conversation = chat.open;
  const room = conversation?.kind === "room" ? chat.room(conversation.name) : null;
  const message = { seq: entry.seq, from: entry.from, room: room?.name, deleted: entry.deleted };
  const actions = h("div", { class: "message-actions" });
  if (canEdit(message, chat.me)) {
    actions.append(h("button", { type: "button", class: "small quiet", "aria-label": "Edit message", onclick: () => chat.editor.start(entry) }, "Edit"));
  }
  if (canDelete(message, chat.me, room, chat.admin)) {
    actions.append(h("button", { type: "button", class: "small quiet", "aria-label": "Delete message", onclick: () => deleteMessage(chat, entry) }, "Delete"));
  }
  return actions.childElementCount ? actions : null;
}

async function deleteMessage(chat, entry) {
  const whose = entry.from === chat.me ? "this message" : `${entry.from}'s message`;
  if (await confirmAction(`Delete ${whose}?`, "Its text is gone for good; everyone sees that a message was deleted.", "Delete")) {
    sendAction(chat, { type: "delete", seq: entry.seq }, { kind: "delete" });
  }
}

/**
 * Editing one of our messages in the composer: Up arrow or Edit starts it, Enter saves, Escape cancels. The
 * composer counts its length as for a new message (composer.js); the draft waits aside meanwhile.
 */
export class Editor {
  constructor(chat) {
    this.chat = chat;
    this.editing = null; // {seq, key, text}
  }

  /** Up arrow in an empty composer: edit our newest message here. @returns {boolean} editing started */
  startLast() {
    const conversation = this.chat.open;
    const message = conversation ? lastEditable(conversation, this.chat.me) : null;
    if (!message) return false;
    this.start(message);
    return true;
  }

  /** Edit `message` in the composer; what was typed there (the draft) comes back when the edit ends. */
  start(message) {
    this.editing = { seq: message.seq, key: this.chat.openKey, text: message.text };
    this.chat.composer.beginEdit(message.text);
    const box = $("composer-text");
    box.dispatchEvent(new Event("fit")); // the box takes the height of its new text (chat.js)
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
    this.render();
  }

  cancel() {
    if (!this.editing) return;
    this.end();
  }

  end() {
    this.editing = null;
    this.chat.composer.endEdit();
    $("composer-text").dispatchEvent(new Event("fit"));
    this.render();
  }

  /** Enter while editing: send the new text (nothing to send when it did not change). @returns {boolean} done */
  submit(text) {
    const editing = this.editing;
    if (!text.trim() || text === editing.text) {
      this.cancel();
      return true;
    }
    if (this.chat.composer.measure().over) {
      this.chat.notice(`That text is too long: at most ${this.chat.composer.limit.toLocaleString()} characters.`);
      return false;
    }
    if (!sendAction(this.chat, { type: "edit", seq: editing.seq, text }, { kind: "edit" })) return false;
    this.end();
    return true;
  }

  failed(error) {
    this.chat.notice(`The message was not edited: ${error.message}`);
  }

  /** The conversation changed: an edit in progress belongs to the one it started in. */
  follow(key) {
    if (this.editing && this.editing.key !== key) this.cancel();
  }

  render() {
    $("editing-banner").hidden = this.editing === null;
    $("composer").classList.toggle("editing", this.editing !== null);
  }
}
