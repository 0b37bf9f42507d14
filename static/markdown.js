// Message formatting: a small Markdown subset, turned into a tree of safe nodes. No DOM and no HTML here:
// `renderMarkdown` calls a builder for each element and text node (dom.js's `domBuilder` in the page, plain
// objects in tests), so no text a user wrote is ever parsed as HTML.
//
// The subset (docs/protocol.md, "Formatting"):
//   **bold**  *italic* or _italic_  `code`  ```fenced code blocks```  > quotes  [text](https://link)
//   bare http(s) links  @mentions  and line breaks as written.
// Anything else is text. Links are only ever http:, https: or mailto: URLs, opened in a new tab with
// rel="noopener noreferrer". The only elements made are those in ELEMENTS, with the attributes in ATTRIBUTES.

export const ELEMENTS = new Set(["div", "p", "blockquote", "pre", "code", "strong", "em", "a", "span"]);
export const ATTRIBUTES = new Set(["href", "rel", "target", "class", "dir"]);
const SAFE_SCHEMES = new Set(["http:", "https:", "mailto:"]);
// Deeper nesting is shown as text: quotes in quotes in quotes, bold in italic in ...
const MAX_DEPTH = 6;

const FENCE = /^ {0,3}```/;
const QUOTE = /^ {0,3}> ?/;
// What starts an inline construct; each is checked in order at the earliest position one could start.
const INLINE = /`|\*\*|\*|_|\[|https?:\/\/|@/g;
const URL_RUN = /^https?:\/\/[^\s<>"]+/i;
const TRAILING = /[.,;:!?'*_~]+$/;
const MENTION = /^@([A-Za-z0-9_.-]{1,32})/;
// "@" that follows something that can be part of a name or an address is not a mention (a@b.org).
const NOT_BEFORE_MENTION = /[\w@.+-]/;

/**
 * Blocks of a message: paragraphs (lines), quotes (blocks), code (verbatim text).
 * @returns {Array<{type: "p", lines: string[]} | {type: "quote", blocks: object[]} | {type: "code", text: string}>}
 */
export function parseBlocks(text, depth = 0) {
  const lines = text.split("\n");
  const blocks = [];
  let paragraph = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (FENCE.test(line)) {
      const body = [];
      i++;
      while (i < lines.length && !FENCE.test(lines[i])) body.push(lines[i++]);
      blocks.push({ type: "code", text: body.join("\n") });
      paragraph = null;
    } else if (QUOTE.test(line) && depth < MAX_DEPTH) {
      const quoted = [];
      while (i < lines.length && QUOTE.test(lines[i])) quoted.push(lines[i++].replace(QUOTE, ""));
      i--;
      blocks.push({ type: "quote", blocks: parseBlocks(quoted.join("\n"), depth + 1) });
      paragraph = null;
    } else if (line.trim() === "") {
      paragraph = null;
    } else if (paragraph) {
      paragraph.lines.push(line);
    } else {
      paragraph = { type: "p", lines: [line] };
      blocks.push(paragraph);
    }
  }
  return blocks;
}

/** A link target if `raw` is an http(s) or mailto URL; null otherwise (javascript:, data:, nonsense). */
export function safeUrl(raw) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  return SAFE_SCHEMES.has(url.protocol) ? url.href : null;
}

/** A bare URL at the start of `text` without the sentence punctuation after it; null when there is none. */
function bareUrl(text) {
  const match = URL_RUN.exec(text);
  if (!match) return null;
  let raw = match[0].replace(TRAILING, "");
  // A closing bracket at the end belongs to the sentence unless the URL opened one.
  while (raw.endsWith(")") && count(raw, "(") < count(raw, ")")) raw = raw.slice(0, -1).replace(TRAILING, "");
  const href = safeUrl(raw);
  return href ? { raw, href } : null;
}

function count(text, char) {
  return text.split(char).length - 1;
}

/**
 * Inline nodes of one paragraph's text: {t: "text"|"code"|"strong"|"em"|"link"|"mention"|"br", ...}.
 * @returns {object[]}
 */
export function parseInline(text, depth = 0) {
  const nodes = [];
  let plain = "";
  const flush = () => {
    if (plain) nodes.push({ t: "text", v: plain });
    plain = "";
  };
  let at = 0;
  while (at < text.length) {
    INLINE.lastIndex = at;
    const found = INLINE.exec(text);
    if (!found) break;
    const start = found.index;
    plain += text.slice(at, start);
    const rest = text.slice(start);
    const node = depth < MAX_DEPTH ? inlineAt(rest, found[0], text[start - 1], depth) : null;
    if (node) {
      flush();
      nodes.push(node.node);
      at = start + node.length;
    } else {
      plain += found[0][0];
      at = start + 1;
    }
  }
  plain += text.slice(at);
  flush();
  return nodes;
}

/** The construct starting at the beginning of `rest` (`token` matched there), or null if it is text. */
function inlineAt(rest, token, before, depth) {
  if (token === "`") {
    const end = rest.indexOf("`", 1);
    return end > 1 ? { node: { t: "code", v: rest.slice(1, end) }, length: end + 1 } : null;
  }
  if (token === "**") return emphasis(rest, "**", "strong", depth);
  if (token === "*") return emphasis(rest, "*", "em", depth);
  if (token === "_") return before && /\w/.test(before) ? null : emphasis(rest, "_", "em", depth);
  if (token === "[") return link(rest, depth);
  if (token === "@") {
    if (before && NOT_BEFORE_MENTION.test(before)) return null;
    const match = MENTION.exec(rest);
    if (!match) return null;
    // "thanks @bob." mentions bob: a name's trailing dots and dashes are the sentence's, as on the server.
    const name = match[1].replace(/[.-]+$/, "");
    return name ? { node: { t: "mention", name }, length: name.length + 1 } : null;
  }
  const url = bareUrl(rest);
  return url ? { node: { t: "link", href: url.href, c: [{ t: "text", v: url.raw }] }, length: url.raw.length } : null;
}

function emphasis(rest, mark, kind, depth) {
  const inner = rest.slice(mark.length);
  if (!inner || /^\s/.test(inner)) return null;
  let end = inner.indexOf(mark, 1);
  // "**" inside "*...*" closes nothing: look for a single mark not part of a double one.
  while (end > 0 && mark === "*" && inner[end + 1] === "*") end = inner.indexOf(mark, end + 2);
  if (end <= 0 || /\s/.test(inner[end - 1])) return null;
  if (mark === "_" && /\w/.test(inner[end + 1] ?? "")) return null;
  return { node: { t: kind, c: parseInline(inner.slice(0, end), depth + 1) }, length: mark.length * 2 + end };
}

function link(rest, depth) {
  const match = /^\[([^\]\n]{1,500})\]\(([^()\s]{1,2000})\)/.exec(rest);
  if (!match) return null;
  const href = safeUrl(match[2]);
  if (!href) return null;
  return { node: { t: "link", href, c: parseInline(match[1], depth + 1) }, length: match[0].length };
}

/**
 * Build a message's formatted text with `build`: {el(tag, attrs, children) → node, text(string) → node}.
 * @param {string} text
 * @param {{el: Function, text: Function}} build
 * @param {{me?: string}} [options] whose name to highlight in mentions
 * @returns the root node: a <div class="md"> holding the blocks
 */
export function renderMarkdown(text, build, { me = null } = {}) {
  const inline = (nodes) =>
    nodes.map((node) => {
      switch (node.t) {
        case "text":
          return build.text(node.v);
        case "code":
          return build.el("code", {}, [build.text(node.v)]);
        case "strong":
        case "em":
          return build.el(node.t, {}, inline(node.c));
        case "link":
          return build.el("a", { href: node.href, rel: "noopener noreferrer", target: "_blank" }, inline(node.c));
        case "mention": {
          const self = node.name === me || node.name === "room";
          return build.el("span", { class: self ? "mention me" : "mention" }, [build.text(`@${node.name}`)]);
        }
        default:
          return build.text("");
      }
    });
  const blocks = (list) =>
    list.map((block) => {
      if (block.type === "code") return build.el("pre", { dir: "ltr" }, [build.el("code", {}, [build.text(block.text)])]);
      if (block.type === "quote") return build.el("blockquote", { dir: "auto" }, blocks(block.blocks));
      const children = [];
      // Line breaks stay newlines in the text (shown with white-space: pre-wrap), so copying keeps them.
      block.lines.forEach((line, index) => {
        if (index > 0) children.push(build.text("\n"));
        children.push(...inline(parseInline(line)));
      });
      return build.el("p", { dir: "auto" }, children);
    });
  return build.el("div", { class: "md" }, blocks(parseBlocks(text)));
}
