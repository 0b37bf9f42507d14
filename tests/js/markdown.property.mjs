// Property test of the message renderer (static/markdown.js), run by tests/test_page_checks.py with
// fast-check from npm installed into a temporary directory (FAST_CHECK_MODULES: its node_modules). Not a
// `*.test.mjs` file, so `node --test tests/js/` leaves it out when fast-check is not there.
//
// Whatever the text, the rendered tree holds only the allowed elements and attributes, no event handler,
// no script, and no link but http:, https: and mailto: ones; and every character of the text is still there.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

import { ATTRIBUTES, ELEMENTS, renderMarkdown } from "../../static/markdown.js";

const modules = process.env.FAST_CHECK_MODULES;
if (!modules) throw new Error("set FAST_CHECK_MODULES to a node_modules directory holding fast-check");
const fc = createRequire(`${modules}/`)("fast-check");

const RUNS = Number(process.env.PROPERTY_RUNS ?? 3000);

/** A builder that records what the renderer asks for. */
const recorder = {
  el: (tag, attrs, children) => ({ tag, attrs, children }),
  text: (value) => ({ text: value }),
};

function* walk(node) {
  yield node;
  for (const child of node.children ?? []) yield* walk(child);
}

function check(text) {
  const root = renderMarkdown(text, recorder, { me: "alice" });
  for (const node of walk(root)) {
    if (node.text !== undefined) {
      assert.equal(typeof node.text, "string");
      continue;
    }
    assert.ok(ELEMENTS.has(node.tag), `element ${node.tag}`);
    assert.ok(!["script", "iframe", "img", "object", "embed", "style", "svg", "math"].includes(node.tag));
    for (const [name, value] of Object.entries(node.attrs)) {
      assert.ok(ATTRIBUTES.has(name), `attribute ${name}`);
      assert.ok(!/^on/i.test(name) && name !== "style" && name !== "src", `attribute ${name}`);
      assert.equal(typeof value, "string");
    }
    if (node.tag === "a") {
      const url = new URL(node.attrs.href);
      assert.ok(["http:", "https:", "mailto:"].includes(url.protocol), `link ${node.attrs.href}`);
      assert.equal(node.attrs.rel, "noopener noreferrer");
    } else {
      assert.equal(node.attrs.href, undefined);
    }
  }
  return root;
}

const hostile = fc.constantFrom(
  "**", "*", "_", "`", "```", "```js\n", "> ", ">", "[", "](", ")", "(", "]", "\n", " ", "@", "@bob", "@room",
  "javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)", "java\tscript:alert(1)", "java\nscript:",
  "&#106;avascript:", "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)", "file:///etc/passwd",
  "https://example.org/a_(b)*c*", "http://x", "mailto:a@b.org", "<script>alert(1)</script>",
  "<img src=x onerror=alert(1)>", "\" onmouseover=\"alert(1)", "'><svg onload=alert(1)>", "\u0000", "\u202e",
  "\ud83d\ude00", "שלום", "你好世界",
);
const markdownish = fc.array(fc.oneof(hostile, fc.string({ maxLength: 8 }), fc.fullUnicodeString({ maxLength: 4 })), {
  maxLength: 40,
}).map((parts) => parts.join(""));

test("no input renders a script, an event handler or a link that is not http(s) or mailto", () => {
  fc.assert(fc.property(fc.oneof(markdownish, fc.fullUnicodeString({ maxLength: 300 })), (text) => {
    check(text);
  }), { numRuns: RUNS });
});

test("links made from [text](url) keep only safe targets", () => {
  const scheme = fc.constantFrom("javascript", "JAVASCRIPT", "data", "vbscript", "file", "http", "https", "mailto", "ftp");
  fc.assert(fc.property(scheme, fc.string({ maxLength: 20 }), fc.string({ maxLength: 20 }), (s, rest, label) => {
    check(`[${label}](${s}:${rest})`);
    check(`${s}://${rest}`);
  }), { numRuns: RUNS });
});

test("every character of the text is still there, as text", () => {
  const textOf = (node) => (node.text !== undefined ? node.text : node.children.map(textOf).join(""));
  const plain = fc.stringOf(fc.constantFrom("a", "b", " ", ".", "ä", "世", "😀"), { maxLength: 60 });
  fc.assert(fc.property(plain, (text) => {
    // Without markup characters nothing is dropped (blank lines only separate paragraphs).
    assert.equal(textOf(check(text)), text.split("\n").filter((line) => line.trim()).join("\n"));
  }), { numRuns: RUNS });
});
