// Which transport carries the link (static/fallback.js): WebSocket first, an event stream when WebSocket
// cannot get through, long polling when the stream is held back, and back to WebSocket when it works again.
// Only failures while the server answers over HTTP count: an outage is not a blocked transport.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  EVENT_STREAM,
  EVENT_STREAM_SILENCE_MS,
  LONG_POLL,
  TRANSPORT_NAMES,
  TransportChooser,
  WEBSOCKET,
  WEBSOCKET_CONNECT_MS,
  WEBSOCKET_RETRY_MS,
} from "../../static/fallback.js";
import { makeState } from "./support.mjs";

const BLOCKED = { code: null, timedOut: false, reachable: true };
const LIMIT_MS = 35_000;

test("WebSocket first; two failed upgrades while the server answers move the link to an event stream", () => {
  const chooser = new TransportChooser();
  assert.equal(chooser.current, WEBSOCKET);
  assert.equal(chooser.onFallback, false);
  assert.equal(chooser.connectTimeoutMs(LIMIT_MS), WEBSOCKET_CONNECT_MS);
  assert.equal(chooser.failed(WEBSOCKET, BLOCKED), false, "one failure is not enough");
  assert.equal(chooser.current, WEBSOCKET);
  assert.equal(chooser.failed(WEBSOCKET, BLOCKED), true);
  assert.equal(chooser.current, EVENT_STREAM);
  assert.equal(chooser.onFallback, true);
  assert.equal(chooser.connectTimeoutMs(LIMIT_MS), EVENT_STREAM_SILENCE_MS);
});

test("a WebSocket that has not completed in 5 s moves the link at once", () => {
  const chooser = new TransportChooser();
  assert.equal(chooser.failed(WEBSOCKET, { ...BLOCKED, timedOut: true }), true);
  assert.equal(chooser.current, EVENT_STREAM);
});

test("an outage is not a blocked transport: no failure counts while the server does not answer", () => {
  const chooser = new TransportChooser();
  for (let i = 0; i < 10; i++) {
    assert.equal(chooser.failed(WEBSOCKET, { code: 1006, timedOut: i % 2 === 0, reachable: false }), false);
  }
  assert.equal(chooser.current, WEBSOCKET);
  assert.equal(chooser.failures, 0);
});

test("a close the server chose (restart, policy, try later) proves the transport works", () => {
  const chooser = new TransportChooser();
  for (const code of [1012, 1013, 1008, 1012]) assert.equal(chooser.failed(WEBSOCKET, { ...BLOCKED, code }), false);
  assert.equal(chooser.current, WEBSOCKET);
});

test("a success resets the count: failures must come in a row", () => {
  const chooser = new TransportChooser();
  chooser.failed(WEBSOCKET, BLOCKED);
  chooser.succeeded(WEBSOCKET);
  assert.equal(chooser.failed(WEBSOCKET, BLOCKED), false);
  assert.equal(chooser.current, WEBSOCKET);
});

test("a failure reported late, for a transport the link has left, changes nothing", () => {
  const chooser = new TransportChooser();
  chooser.failed(WEBSOCKET, { ...BLOCKED, timedOut: true });
  assert.equal(chooser.failed(WEBSOCKET, BLOCKED), false);
  assert.equal(chooser.current, EVENT_STREAM);
  assert.equal(chooser.failures, 0);
});

test("an event stream that delivers nothing in 10 s (or fails twice) gives way to long polling, the last resort", () => {
  const silent = new TransportChooser();
  silent.failed(WEBSOCKET, { ...BLOCKED, timedOut: true });
  assert.equal(silent.failed(EVENT_STREAM, { ...BLOCKED, timedOut: true }), true);
  assert.equal(silent.current, LONG_POLL);
  assert.equal(silent.connectTimeoutMs(LIMIT_MS), LIMIT_MS);
  for (let i = 0; i < 5; i++) assert.equal(silent.failed(LONG_POLL, BLOCKED), false);
  assert.equal(silent.current, LONG_POLL);

  const failing = new TransportChooser();
  failing.failed(WEBSOCKET, { ...BLOCKED, timedOut: true });
  assert.equal(failing.failed(EVENT_STREAM, BLOCKED), false);
  assert.equal(failing.failed(EVENT_STREAM, BLOCKED), true);
  assert.equal(failing.current, LONG_POLL);
});

test("on a fallback WebSocket is tried again every few minutes, with jitter, and the link moves back", () => {
  const low = new TransportChooser({ random: () => 0 });
  const high = new TransportChooser({ random: () => 0.999999 });
  assert.equal(low.probeDelayMs(), WEBSOCKET_RETRY_MS * 0.75);
  assert.equal(high.probeDelayMs(), Math.round(WEBSOCKET_RETRY_MS * 1.25));
  assert.ok(WEBSOCKET_RETRY_MS >= 60_000, "every few minutes, not seconds");
  const configured = new TransportChooser({ retryMs: 2_000, random: () => 0.5 });
  assert.equal(configured.probeDelayMs(), 2_000);

  configured.failed(WEBSOCKET, { ...BLOCKED, timedOut: true });
  configured.failed(EVENT_STREAM, { ...BLOCKED, timedOut: true });
  assert.equal(configured.current, LONG_POLL);
  configured.backToWebSocket();
  assert.equal(configured.current, WEBSOCKET);
  assert.equal(configured.onFallback, false);
  assert.equal(configured.failed(WEBSOCKET, BLOCKED), false, "and it counts afresh");
});

test("the badge has a name for every transport", () => {
  assert.deepEqual(Object.keys(TRANSPORT_NAMES).sort(), [EVENT_STREAM, LONG_POLL, WEBSOCKET].sort());
});

// ---------------------------------------------------------------- moving between transports loses and repeats nothing

test("a POST's ack settles its message but never moves the cursor past messages still on the stream", (t) => {
  const { state } = makeState(t);
  state.welcome({ seq: 10, contacts: [] }, null);
  const item = state.enqueue("room:desk", "over http");
  state.queueUnsent(false);
  state.sendQueued(() => true);
  // The POST's answer (ack 12) overtakes message 11, still on its way down the event stream.
  const settled = state.settleByAck({ id: item.id, seq: 12, ts: "2024-05-01T12:00:01.000Z" }, { ordered: false });
  assert.deepEqual(settled, { key: "room:desk", added: true });
  assert.equal(state.cursor, 10, "a resume from here still replays message 11");
  assert.deepEqual(state.pending, []);
  state.receive({ seq: 11, from: "bob", room: "desk", text: "in flight", ts: "t" }, { visible: true });
  assert.equal(state.cursor, 11);
  // The same ack down an ordered stream is a resume point.
  state.settleByAck({ id: item.id, seq: 12, ts: "t" }, { ordered: true });
  assert.equal(state.cursor, 12);
});

test("the replay of the connection the link moves to repeats nothing on screen", (t) => {
  const { state } = makeState(t);
  state.welcome({ seq: 20, contacts: [] }, null);
  const live = [21, 22, 23].map((seq) => ({ seq, from: "bob", room: "desk", text: `m${seq}`, ts: "t" }));
  for (const message of live.slice(0, 2)) state.receive(message, { visible: false });
  // A background WebSocket opened with since=21; 22 and 23 came over the fallback before its welcome.
  state.receive(live[2], { visible: false });
  state.linkDown();
  state.welcome({ seq: 23, contacts: [] }, 21);
  assert.equal(state.replaying, true, "nothing is sent until the new connection's replay is over");
  for (const message of live.slice(1)) assert.equal(state.receive(message, { visible: false }).added, false);
  state.resumed({ since: 21, until: 23, count: 2, truncated: false });
  assert.deepEqual(
    state.conversation("room:desk").sorted().map((m) => m.seq),
    [21, 22, 23],
  );
  assert.equal(state.unreadIn("room:desk"), 3, "each message counted once");
});
