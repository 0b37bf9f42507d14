// DOM helpers. Text only ever goes in as text nodes (append / textContent): nothing here parses HTML.

import { ATTRIBUTES, ELEMENTS, renderMarkdown } from "./markdown.js";

export const $ = (id) => document.getElementById(id);

/** `h("li", {class: "x", "aria-label": "y"}, "text", child)`: an element; strings become text nodes. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "onclick") el.addEventListener("click", value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

/** Replace an element's children; null, undefined and false are left out. */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
}

/**
 * The builder markdown.js renders with: elements made one by one, text only ever as text nodes, and nothing
 * outside markdown.js's lists of elements and attributes, whatever it asks for.
 */
export const domBuilder = {
  el(tag, attrs, children) {
    const el = document.createElement(ELEMENTS.has(tag) ? tag : "span");
    for (const [name, value] of Object.entries(attrs)) if (ATTRIBUTES.has(name)) el.setAttribute(name, value);
    el.append(...children);
    return el;
  },
  text: (value) => document.createTextNode(value),
};

/** A message's text, formatted (markdown.js), as DOM nodes; `me` is highlighted where it is mentioned. */
export const formatted = (text, me) => renderMarkdown(text, domBuilder, { me });

/**
 * Make `parent`'s children the elements of `items`, in order, touching as little as possible: an item
 * whose `sig` is unchanged keeps its element (and the focus, selection and scroll inside it).
 * Each item: {key, sig, create(), update(el)?}.
 */
export function patchChildren(parent, items) {
  const previous = parent.patchCache ?? new Map();
  const next = new Map();
  const elements = [];
  for (const item of items) {
    let entry = previous.get(item.key);
    if (!entry) {
      entry = { sig: item.sig, el: item.create() };
    } else if (entry.sig !== item.sig) {
      if (item.update) item.update(entry.el);
      else entry = { sig: item.sig, el: item.create() };
      entry.sig = item.sig;
    }
    next.set(item.key, entry);
    elements.push(entry.el);
  }
  let cursor = parent.firstChild;
  for (const el of elements) {
    if (el === cursor) cursor = cursor.nextSibling;
    else parent.insertBefore(el, cursor);
  }
  while (cursor) {
    const following = cursor.nextSibling;
    cursor.remove();
    cursor = following;
  }
  parent.patchCache = next;
}

/** A stable hue for a name, for its avatar. */
export function hue(name) {
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return hash % 360;
}

export function avatar(name, extraClass = "") {
  const el = h("span", { class: `avatar ${extraClass}`.trim(), "aria-hidden": "true" }, initial(name));
  el.style.setProperty("--hue", String(hue(name)));
  return el;
}

function initial(name) {
  const bare = name.startsWith("guest-") ? name.slice(6) : name;
  return (bare.match(/[A-Za-z0-9]/)?.[0] ?? "?").toUpperCase();
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: "long", month: "long", day: "numeric" });

export const formatTime = (date) => timeFormat.format(date);
export const formatFull = (date) => fullFormat.format(date);

export function dayKey(date) {
  return `${date.getFullYear()}-${date.getMonth() + 1}-${date.getDate()}`;
}

export function dayLabel(date, now = new Date()) {
  const today = dayKey(now);
  const yesterday = dayKey(new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1));
  const key = dayKey(date);
  if (key === today) return "Today";
  if (key === yesterday) return "Yesterday";
  return dayFormat.format(date);
}
