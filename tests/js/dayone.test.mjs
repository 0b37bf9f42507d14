// The page's DOM-free parts for read state, typing, preferences, formatting and the message box: driven
// directly under Node, with fake storage and a fake clock.

import assert from "node:assert/strict";
import { test } from "node:test";

import { codePoints, replyText } from "../../static/composer.js";
import { backoffCap, backoffDelay } from "../../static/connection.js";
import { parseBlocks, parseInline, renderMarkdown, safeUrl } from "../../static/markdown.js";
import { Prefs } from "../../static/prefs.js";
import { OneAtATime } from "../../static/search.js";
import { firstUnread, mentionsMe, ReadState } from "../../static/readstate.js";
import { TYPING_SEND_EVERY_MS, TYPING_SHOW_MS, TypingState, typingText } from "../../static/typingstate.js";
import { Clock, FakeStorage } from "./support.mjs";

const builder = {
  el: (tag, attrs, children) => ({ tag, attrs, children }),
  text: (value) => value,
};
const html = (node) =>
  typeof node === "string"
    ? node
    : `<${node.tag}${Object.entries(node.attrs).map(([k, v]) => ` ${k}="${v}"`).join("")}>${node.children.map(html).join("")}</${node.tag}>`;
const render = (text, me = "alice") => html(renderMarkdown(text, builder, { me }));

test("formatting: the documented subset, and everything else as text", () => {
  assert.equal(render("**bold** *it* _it_ `co*de*`"), '<div class="md"><p dir="auto"><strong>bold</strong> <em>it</em> <em>it</em> <code>co*de*</code></p></div>');
  assert.equal(
    render("see [docs](https://example.org/d) and https://example.org/x."),
    '<div class="md"><p dir="auto">see <a href="https://example.org/d" rel="noopener noreferrer" target="_blank">docs</a> and ' +
      '<a href="https://example.org/x" rel="noopener noreferrer" target="_blank">https://example.org/x</a>.</p></div>',
  );
  assert.equal(render("[x](javascript:alert(1)) <b>no</b>"), '<div class="md"><p dir="auto">[x](javascript:alert(1)) <b>no</b></p></div>');
  assert.equal(render("> quoted\n> **twice**\nafter"), '<div class="md"><blockquote dir="auto"><p dir="auto">quoted\n<strong>twice</strong></p></blockquote><p dir="auto">after</p></div>');
  assert.equal(render("```\n**not bold**\n```"), '<div class="md"><pre dir="ltr"><code>**not bold**</code></pre></div>');
  assert.equal(render("thanks @alice."), '<div class="md"><p dir="auto">thanks <span class="mention me">@alice</span>.</p></div>');
  assert.equal(render("hi @alice and @bob, mail a@b.org"), '<div class="md"><p dir="auto">hi <span class="mention me">@alice</span> and <span class="mention">@bob</span>, mail a@b.org</p></div>');
  assert.equal(render("snake_case_name **unclosed"), '<div class="md"><p dir="auto">snake_case_name **unclosed</p></div>');
  assert.deepEqual(parseBlocks("a\n\nb").map((b) => b.lines), [["a"], ["b"]]);
  assert.deepEqual(parseInline("`x`"), [{ t: "code", v: "x" }]);
  assert.equal(safeUrl("mailto:a@b.org"), "mailto:a@b.org");
  assert.equal(safeUrl("data:text/html,x"), null);
});

test("formatting: hostile input of the largest size renders quickly", () => {
  for (const text of ["*".repeat(4000), "**a".repeat(1300), "[".repeat(4000), "> ".repeat(2000), "`".repeat(4000)]) {
    const started = Date.now();
    renderMarkdown(text, builder);
    assert.ok(Date.now() - started < 2000, text.slice(0, 10));
  }
});

test("read state: the server's counts, messages counted once, reads that the server must hear about", () => {
  const reads = new ReadState();
  reads.apply("room:a", { seq: 10, unread: 2, mentions: 1, last: 12 });
  assert.equal(reads.arrived("room:a", { seq: 12, from: "bob" }, { me: "alice", seen: false }), false, "counted already");
  assert.equal(reads.arrived("room:a", { seq: 13, from: "bob", mentions: ["@room"] }, { me: "alice", seen: false }), true);
  assert.deepEqual([reads.unreadIn("room:a"), reads.mentionsIn("room:a")], [3, 2]);
  assert.equal(reads.arrived("room:a", { seq: 14, from: "bob" }, { me: "alice", seen: true }), false, "looked at: the page reads it");
  assert.equal(reads.readUpTo("room:a", 14), true);
  assert.equal(reads.readUpTo("room:a", 14), false, "nothing new to tell the server");
  assert.deepEqual([reads.unreadIn("room:a"), reads.mentionsIn("room:a"), reads.position("room:a")], [0, 0, 14]);
  reads.arrived("dm:bob", { seq: 15, from: "bob" }, { me: "alice", seen: false });
  reads.arrived("dm:bob", { seq: 16, from: "alice" }, { me: "alice", seen: false });
  assert.equal(reads.unreadIn("dm:bob"), 0, "answering reads what came before");
  reads.apply("room:b", { unread: 5 });
  assert.equal(reads.total(), 5);
  assert.equal(reads.total((key) => key === "room:b"), 0);
  assert.equal(mentionsMe({ mentions: ["alice"] }, "alice"), true);
  assert.equal(mentionsMe({}, "alice"), false);
  const messages = [{ seq: 1, from: "bob" }, { seq: 2, from: "alice" }, { seq: 3, from: "bob" }];
  assert.equal(firstUnread(messages, 1, "alice"), 3, "the line goes before the first message from someone else");
  assert.equal(firstUnread(messages, 3, "alice"), null);
});

test("typing: sent at most every 3 s per conversation, shown for 5 s, gone when the message comes", () => {
  const clock = new Clock();
  const typing = new TypingState(clock.now);
  assert.equal(typing.typed("room:a"), true);
  assert.equal(typing.typed("room:a"), false);
  assert.equal(typing.typed("room:b"), true, "each conversation on its own");
  clock.advance(TYPING_SEND_EVERY_MS);
  assert.equal(typing.typed("room:a"), true);
  typing.sentMessage("room:a");
  assert.equal(typing.typed("room:a"), true, "after sending, the next keystroke says so at once");

  typing.heard("room:a", "bob");
  clock.advance(1000);
  typing.heard("room:a", "carol");
  assert.deepEqual(typing.who("room:a"), ["bob", "carol"]);
  assert.equal(typing.nextExpiry(), TYPING_SHOW_MS - 1000);
  clock.advance(TYPING_SHOW_MS - 1000);
  assert.deepEqual(typing.who("room:a"), ["carol"]);
  assert.equal(typing.stopped("room:a", "carol"), true);
  assert.deepEqual(typing.who("room:a"), []);
  assert.equal(typing.nextExpiry(), null);
  assert.equal(typingText([]), "");
  assert.equal(typingText(["bob"]), "bob is typing…");
  assert.equal(typingText(["bob", "carol"]), "bob and carol are typing…");
  assert.equal(typingText(["a", "b", "c"]), "3 people are typing…");
});

test("preferences: mutes, sound and last conversation per user; drafts per tab", () => {
  const storage = new FakeStorage();
  const tab = new FakeStorage();
  const prefs = new Prefs("alice", { storage, tabStorage: tab });
  assert.equal(prefs.toggleMute("room:a"), true);
  prefs.setSound(true);
  prefs.opened("dm:bob");
  prefs.setDraft("room:a", "half a thought");
  const again = new Prefs("alice", { storage, tabStorage: tab });
  assert.deepEqual([again.isMuted("room:a"), again.sound, again.lastOpen, again.draft("room:a")], [true, true, "dm:bob", "half a thought"]);
  const otherTab = new Prefs("alice", { storage, tabStorage: new FakeStorage() });
  assert.equal(otherTab.draft("room:a"), "", "drafts stay with their tab");
  assert.equal(otherTab.lastOpen, "dm:bob", "a new tab opens where the user was last");
  assert.equal(new Prefs("bob", { storage, tabStorage: tab }).isMuted("room:a"), false);
  storage.full = true;
  prefs.toggleMute("room:a"); // a full storage costs persistence, nothing else
  assert.equal(prefs.isMuted("room:a"), false);
  const broken = new Prefs("alice", { storage: new FakeStorage({ "tornado-chat/v1/prefs/alice": "{" }), tabStorage: null });
  assert.deepEqual([broken.muted.size, broken.sound, broken.lastOpen], [0, false, null]);
});

test("the message box counts code points and quotes replies", () => {
  assert.equal(codePoints("😀".repeat(3)), 3);
  assert.equal("😀".repeat(3).length, 6);
  assert.equal(codePoints("é"), 1);
  assert.equal(replyText({ from: "bob", text: "one\n\ntwo" }, { mention: true }), "> one\n> two\n@bob ");
  assert.equal(replyText({ from: "bob", text: "1\n2\n3\n4" }, { mention: false }), "> 1\n> 2\n> 3\n> …\n");
});

test("reconnects stay a few seconds apart early in an outage, then back off to 30 s", () => {
  assert.equal(backoffCap(null), 30_000, "never connected: the full backoff");
  assert.equal(backoffCap(5_000), 4_000);
  assert.equal(backoffCap(61_000), 30_000);
  const highest = () => 0.999;
  assert.ok(backoffDelay(10, highest, backoffCap(5_000)) < 4_000);
  assert.ok(backoffDelay(10, highest) > 29_000);
});

test("search: one question on the wire at a time; the latest asked meanwhile goes when the answer comes", () => {
  const sent = [];
  let up = true;
  const asker = new OneAtATime((frame) => up && sent.push(frame) > 0, "search");
  assert.equal(asker.ask({ type: "search", q: "one" }), true);
  assert.equal(asker.ask({ type: "search", q: "two" }), true); // waits: the server refuses a second at once
  assert.equal(asker.ask({ type: "search", q: "three" }), true); // replaces "two"
  assert.deepEqual(sent.map((f) => f.q), ["one"]);
  assert.equal(asker.settled(sent[0].id), false); // the answer to "one" is not wanted any more
  assert.deepEqual(sent.map((f) => f.q), ["one", "three"]);
  assert.equal(asker.mine(sent[1].id), true);
  assert.equal(asker.settled(sent[1].id), true);
  assert.equal(asker.mine(sent[1].id), false);
  // A refusal settles a question as an answer does; a question lost with the link is asked again on the next.
  asker.ask({ type: "search", q: "four" });
  up = false;
  asker.relinked();
  up = true;
  asker.relinked();
  assert.deepEqual(sent.map((f) => f.q), ["one", "three", "four", "four"]);
  assert.equal(asker.settled(sent[3].id), true);
  asker.ask({ type: "search", q: "five" });
  asker.drop(); // the panel closed: its answer is nobody's
  assert.equal(asker.settled(sent[4].id), false);
  assert.equal(asker.ask({ type: "search", q: "six" }), true);
  assert.equal(sent.at(-1).q, "six");
});
