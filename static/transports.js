// The three ways a link reaches the server, behind one small interface, so that connection.js need not care
// which one carries it (docs/protocol.md, "Without WebSocket"):
//
// - WebSocket (`ws`): frames both ways on one socket.
// - Event stream: frames come as Server-Sent Events (`events`); frames go out in POSTs (`api/frames`).
// - Long polling: frames come in answers to polls (`poll`), each acknowledging the one before with its
//   cursor; frames go out in POSTs.
//
// `openTransport(kind, since, handlers, options)` makes one; `handlers` (the link may swap them) are called as
//   frame(frame, ordered): a frame from the server. `ordered` is false for the replies a POST answers with
//     (acks, errors): they may overtake frames still on their way down the stream, so their seq is no resume
//     point
//   heard(): something came from the server that is no frame (an empty poll answer)
//   closed(code, reason): the transport is over (code null: it broke rather than being closed); called once
// and a transport has send(frame) → boolean (false: it cannot take frames yet or any more), close() (the
// server ends the session at once) and abort(why) (drop it without waiting for anything).

import { EVENT_STREAM, LONG_POLL, WEBSOCKET } from "./fallback.js";

/** Most frames in one POST (the server takes 64). */
const POST_FRAMES_MAX = 32;
/** A POST waits up to 10 s at the server for the acks of its sends; give it that and some. */
const POST_TIMEOUT_MS = 20_000;
/** How much longer than its `wait` a poll may take before it is given up. */
const POLL_SLACK_MS = 15_000;

/** A URL next to the page (so a path prefix is kept) with query parameters; `ws:`/`wss:` for the socket. */
export function pageUrl(path, params = {}) {
  const url = new URL(path, document.baseURI);
  if (path === "ws") url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) url.searchParams.set(name, String(value));
  }
  return url.href;
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

class WebSocketTransport {
  constructor(since, handlers) {
    this.kind = WEBSOCKET;
    this.handlers = handlers;
    this.done = false;
    const ws = (this.ws = new WebSocket(pageUrl("ws", { since })));
    ws.onmessage = (event) => {
      const frame = parse(event.data);
      if (frame === null) this.handlers.heard();
      else this.handlers.frame(frame, true);
    };
    ws.onclose = (event) => this.end(event.code, event.reason);
  }

  send(frame) {
    if (this.done || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  close() {
    this.shut(1000, "bye");
  }

  abort(why) {
    this.shut(4000, why);
  }

  shut(code, reason) {
    this.detach();
    try {
      this.ws.close(code, reason);
    } catch {
      // already closing
    }
  }

  detach() {
    this.done = true;
    const ws = this.ws;
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = null;
    ws.onopen = null;
  }

  end(code, reason) {
    if (this.done) return;
    this.detach();
    this.handlers.closed(code, reason);
  }
}

/** What the event stream and long polling share: the session id, and frames POSTed one request at a time. */
class HttpTransport {
  constructor(handlers) {
    this.handlers = handlers;
    this.session = null;
    this.outbox = [];
    this.posting = false;
    this.done = false;
  }

  /** Queue a frame; frames sent in the same turn go in one POST, and POSTs go one after another, in order. */
  send(frame) {
    if (this.done || this.session === null) return false;
    this.outbox.push(frame);
    if (!this.posting) queueMicrotask(() => this.post());
    return true;
  }

  async post() {
    if (this.posting || this.done || !this.outbox.length) return;
    this.posting = true;
    const frames = this.outbox.splice(0, POST_FRAMES_MAX);
    let replies;
    try {
      const response = await fetch(pageUrl("api/frames", { session: this.session }), {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(frames),
        signal: AbortSignal.timeout(POST_TIMEOUT_MS),
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      replies = await response.json();
    } catch {
      // The frames may or may not have arrived: the link starts afresh, and what was not acked is resent
      // with its id, which the server stores once.
      this.end(null, "post failed");
      return;
    } finally {
      this.posting = false;
    }
    for (const reply of replies) {
      if (this.done) return;
      this.handlers.frame(reply, false);
    }
    this.post();
  }

  end(code, reason) {
    if (this.done) return;
    this.done = true;
    this.stop();
    this.handlers.closed(code, reason);
  }

  close() {
    this.done = true;
    this.stop();
  }

  abort() {
    this.close();
  }

  stop() {}
}

class EventStreamTransport extends HttpTransport {
  constructor(since, handlers) {
    super(handlers);
    this.kind = EVENT_STREAM;
    const source = (this.source = new EventSource(pageUrl("events", { since })));
    source.onmessage = (event) => {
      const frame = parse(event.data);
      if (frame === null) return;
      if (frame.type === "welcome" && typeof frame.session === "string") this.session = frame.session;
      this.handlers.frame(frame, true);
    };
    // The server ends the stream with why (a WebSocket close code and reason).
    source.addEventListener("close", (event) => {
      const notice = parse(event.data) ?? {};
      this.end(Number.isInteger(notice.code) ? notice.code : null, typeof notice.reason === "string" ? notice.reason : "");
    });
    // EventSource would reconnect by itself; the link decides that (with its cursor, backoff and fallbacks).
    source.onerror = () => this.end(null, "");
  }

  stop() {
    this.source.onmessage = null;
    this.source.onerror = null;
    this.source.close(); // the server sees the connection close and ends the session
  }
}

class PollTransport extends HttpTransport {
  constructor(since, handlers, waitS) {
    super(handlers);
    this.kind = LONG_POLL;
    this.waitS = waitS;
    this.cursor = 0;
    this.controller = null;
    this.run(since);
  }

  async run(since) {
    let params = { since };
    while (!this.done) {
      const controller = (this.controller = new AbortController());
      const timer = setTimeout(() => controller.abort(), this.waitS * 1000 + POLL_SLACK_MS);
      let answer;
      try {
        const response = await fetch(pageUrl("poll", params), {
          credentials: "same-origin",
          cache: "no-store",
          signal: controller.signal,
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        answer = await response.json();
      } catch {
        this.end(null, "");
        return;
      } finally {
        clearTimeout(timer);
      }
      if (this.done) return;
      this.session ??= answer.session;
      this.cursor = answer.cursor;
      if (!answer.frames.length) this.handlers.heard();
      for (const frame of answer.frames) {
        if (this.done) return;
        this.handlers.frame(frame, true);
      }
      if (answer.close) {
        this.end(answer.close.code, answer.close.reason);
        return;
      }
      // The next poll acknowledges everything this answer held.
      params = { session: this.session, cursor: this.cursor, wait: this.waitS };
    }
  }

  stop() {
    this.controller?.abort();
  }

  close() {
    const open = !this.done && this.session !== null;
    super.close();
    // Tell the server now (a poller that simply stops is only found by the heartbeat); `keepalive` lets the
    // request outlive a page that is going away.
    if (open) {
      fetch(pageUrl("poll", { session: this.session }), {
        method: "DELETE",
        credentials: "same-origin",
        keepalive: true,
      }).catch(() => {});
    }
  }
}

/**
 * A transport of `kind` (fallback.js), resuming after `since` (null: none).
 * @param {{pollWaitS: number}} options how long each poll may wait at the server
 */
export function openTransport(kind, since, handlers, { pollWaitS }) {
  if (kind === EVENT_STREAM) return new EventStreamTransport(since, handlers);
  if (kind === LONG_POLL) return new PollTransport(since, handlers, pollWaitS);
  return new WebSocketTransport(since, handlers);
}
