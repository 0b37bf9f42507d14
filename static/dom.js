// DOM helpers. Text only ever goes in as text nodes (append / textContent): nothing here parses HTML.

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

const LINK = /\bhttps?:\/\/[^\s<>"]+/gi;
const TRAILING = /[.,;:!?'*_~]+$/;

/** Text with its http(s) URLs made into safe links: a list of strings and <a> elements. */
export function linkify(text) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(LINK)) {
    let raw = match[0].replace(TRAILING, "");
    // A closing bracket at the end belongs to the sentence unless the URL opened one.
    while (raw.endsWith(")") && count(raw, "(") < count(raw, ")")) raw = raw.slice(0, -1).replace(TRAILING, "");
    let url;
    try {
      url = new URL(raw);
    } catch {
      continue;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") continue;
    if (match.index > last) parts.push(text.slice(last, match.index));
    const link = h("a", { href: url.href, rel: "noopener noreferrer", target: "_blank" });
    link.textContent = raw;
    parts.push(link);
    last = match.index + raw.length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}

function count(text, char) {
  return text.split(char).length - 1;
}

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
