// Which transport carries the link: WebSocket first, then the HTTP fallbacks (docs/protocol.md, "Without
// WebSocket"), with no page in it: connection.js asks it and reports to it; Node's test runner drives it
// directly (tests/js/fallback.test.mjs).
//
// - WebSocket first. After two failed attempts, or one that has not completed in 5 s, it switches to an
//   event stream (Server-Sent Events, with frames POSTed).
// - An event stream that has delivered nothing in 10 s (a proxy that buffers it), or fails twice, gives way
//   to long polling, the last resort.
// - A failure counts only when the server's HTTP API answered meanwhile: when nothing answers, the server
//   (or the network) is down, which no transport fixes, and the link waits for it where it is. A close the
//   server chose (a restart, a policy close) is not a failure either: the transport works.
// - On a fallback, WebSocket is tried again in the background every few minutes (with jitter); the link
//   moves back as soon as one delivers its `welcome`.

export const WEBSOCKET = "websocket";
export const EVENT_STREAM = "sse";
export const LONG_POLL = "poll";

/** Failed attempts of a transport (while the server answers over HTTP) before the next one is tried. */
export const FAILURES_TO_FALL_BACK = 2;
/** A WebSocket that has not delivered its `welcome` in this long has failed. */
export const WEBSOCKET_CONNECT_MS = 5_000;
/** An event stream that has delivered nothing in this long is being held back by something on the way. */
export const EVENT_STREAM_SILENCE_MS = 10_000;
/** How often a page on a fallback tries WebSocket again, unless the server says otherwise (api/config). */
export const WEBSOCKET_RETRY_MS = 180_000;
/** Close codes the server chose on a working transport: policy (logged out ...), restart, try again later. */
const SERVER_CLOSES = new Set([1008, 1012, 1013]);

/** What the status badge says about each transport. */
export const TRANSPORT_NAMES = {
  [WEBSOCKET]: "WebSocket",
  [EVENT_STREAM]: "server-sent events",
  [LONG_POLL]: "long polling",
};

const NEXT = { [WEBSOCKET]: EVENT_STREAM, [EVENT_STREAM]: LONG_POLL };

export class TransportChooser {
  /**
   * @param {object} [options]
   * @param {number} [options.retryMs] how often to try WebSocket again while on a fallback
   * @param {() => number} [options.random] uniform in [0, 1), for the jitter
   */
  constructor({ retryMs = WEBSOCKET_RETRY_MS, random = Math.random } = {}) {
    this.retryMs = retryMs;
    this.random = random;
    /** The transport the next attempt uses. */
    this.current = WEBSOCKET;
    /** Failed attempts of `current` since it last worked (or was chosen). */
    this.failures = 0;
  }

  /** On a fallback: the link is over HTTP, and WebSocket is worth trying again now and then. */
  get onFallback() {
    return this.current !== WEBSOCKET;
  }

  /**
   * How long an attempt may take to deliver its `welcome` before it is given up.
   * @param {number} limitMs the heartbeat's limit (interval + timeout), for the last resort
   */
  connectTimeoutMs(limitMs) {
    if (this.current === WEBSOCKET) return Math.min(WEBSOCKET_CONNECT_MS, limitMs);
    if (this.current === EVENT_STREAM) return EVENT_STREAM_SILENCE_MS;
    return limitMs;
  }

  /** An attempt on `kind` delivered its `welcome`: it works. */
  succeeded(kind) {
    if (kind === this.current) this.failures = 0;
  }

  /**
   * An attempt on `kind` ended before its `welcome`.
   * @param {string} kind
   * @param {object} how
   * @param {number | null} how.code its close code, when the server sent one
   * @param {boolean} how.timedOut it was given up after `connectTimeoutMs`
   * @param {boolean} how.reachable the server's HTTP API answered meanwhile
   * @returns {boolean} the link moved to the next transport: connect again at once
   */
  failed(kind, { code = null, timedOut = false, reachable }) {
    if (kind !== this.current || !reachable || SERVER_CLOSES.has(code)) return false;
    const next = NEXT[kind];
    if (next === undefined) return false; // long polling is the last resort: keep at it
    this.failures++;
    if (!timedOut && this.failures < FAILURES_TO_FALL_BACK) return false;
    this.current = next;
    this.failures = 0;
    return true;
  }

  /** When to try WebSocket again from a fallback: `retryMs`, give or take a quarter. */
  probeDelayMs() {
    return Math.round(this.retryMs * (0.75 + 0.5 * this.random()));
  }

  /** A background WebSocket delivered its `welcome`: the link moves back to it. */
  backToWebSocket() {
    this.current = WEBSOCKET;
    this.failures = 0;
  }
}
