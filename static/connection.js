// The link to the server: connect, keep it alive, notice when it dies, come back, and find a way through.
//
// - Transport: WebSocket first; where a network will not carry one, an event stream, then long polling
//   (fallback.js decides, transports.js speaks each). The protocol is the same on all three.
// - Application heartbeat: after `welcome`, a `ping` every heartbeat.interval seconds. When nothing at all
//   has arrived for interval + timeout seconds (and a ping of ours has gone unanswered for `timeout`), the
//   link is dead: it is dropped without waiting for a close handshake, and a new one is opened.
// - Reconnects back off exponentially with full jitter: a random delay up to 1 s, 2 s, 4 s ... capped at
//   30 s; the first `welcome` resets it. Close code 1012 (server restart) says when to come back instead.
//   In the first minute after a working link broke (a restart, a short network blip) the cap is 4 s, so
//   that a page comes back within seconds of the server, not half a minute later.
// - The `online` event and a tab coming back into view reconnect at once.
// - Close code 1008 "logged out" / "account removed" ends the link: the login session is over.
// - On a fallback, a WebSocket is tried in the background every few minutes; once it delivers its
//   `welcome` (having resumed from the cursor, like any new connection) the link moves to it and the HTTP
//   session is closed. Messages that came both ways are the same seqs, kept once by the page's state.

import { TransportChooser, WEBSOCKET, WEBSOCKET_CONNECT_MS } from "./fallback.js";
import { openTransport } from "./transports.js";

const FIRST_DELAY_MS = 1_000;
const MAX_DELAY_MS = 30_000;
// While an outage is young, retries stay frequent: most are restarts and blips of a few seconds.
const YOUNG_OUTAGE_MS = 60_000;
const YOUNG_OUTAGE_MAX_DELAY_MS = 4_000;
const WATCHDOG_MS = 250;
const MAX_RETRY_AFTER_MS = 120_000;

/** Full-jitter exponential backoff: uniform in [0, min(cap, base * 2^attempt)). */
export function backoffDelay(attempt, random = Math.random, cap = MAX_DELAY_MS) {
  return Math.floor(random() * Math.min(cap, FIRST_DELAY_MS * 2 ** Math.min(attempt, 16)));
}

/** The backoff's cap `sinceUpMs` after the last working link broke (null: there never was one). */
export function backoffCap(sinceUpMs) {
  return sinceUpMs !== null && sinceUpMs < YOUNG_OUTAGE_MS ? YOUNG_OUTAGE_MAX_DELAY_MS : MAX_DELAY_MS;
}

/** The delay asked for by a 1012 close, or null when the reason is not `{"retry_after_ms": N}`. */
export function retryAfterMs(reason) {
  try {
    const value = JSON.parse(reason).retry_after_ms;
    if (Number.isFinite(value) && value >= 0) return Math.min(value, MAX_RETRY_AFTER_MS);
  } catch {
    // not JSON: fall back to the backoff
  }
  return null;
}

export class Link {
  /**
   * @param {object} hooks
   *   since(): the resume point to connect with (null for none)
   *   frame(frame, ordered): every frame from the server, `welcome` included; `ordered` is false for replies
   *     that may overtake the stream (a POST's acks: no resume point)
   *   up(): the link is usable (after `welcome`); down(): it is not any more
   *   status(): the state shown to the user changed (read `state`, `retryAt`, `everUp`, `kind`)
   *   sessionEnded(reason): closed with 1008 logged out / account removed, or the login has expired
   *   loginState(): resolves "in" (the server answered: still logged in), "out" (the login is over) or
   *     "unknown" (the server cannot be reached). A refused handshake looks like any network failure in a
   *     browser, so the app asks the HTTP API; its answer also tells a blocked transport from a server that
   *     is down
   * @param {{interval: number, timeout: number}} heartbeat seconds, from api/config until `welcome` says
   * @param {{websocketRetryMs?: number}} [options] how often to try WebSocket again while on a fallback
   */
  constructor(hooks, heartbeat, { websocketRetryMs } = {}) {
    this.hooks = hooks;
    this.heartbeat = heartbeat;
    this.chooser = new TransportChooser(websocketRetryMs ? { retryMs: websocketRetryMs } : {});
    this.tx = null;
    // idle | connecting | up | waiting | stopped
    this.state = "idle";
    this.attempt = 0;
    this.everUp = false;
    this.retryAt = 0;
    this.sinceUsed = null;
    this.lastHeard = 0;
    this.brokeAt = null; // when the last working link broke
    this.connectStarted = 0;
    this.unansweredSince = null;
    this.nextPingId = 1;
    this.retryTimer = null;
    this.pingTimer = null;
    this.watchdog = null;
    this.countdown = null;
    this.probe = null;
    this.probeTimer = null;
    this.probeGiveUp = null;
    this.hiddenAt = document.hidden ? Date.now() : null;
    this.listeners = {
      online: () => this.onOnline(),
      offline: () => this.hooks.status(),
      visibilitychange: () => this.onVisibility(),
    };
    window.addEventListener("online", this.listeners.online);
    window.addEventListener("offline", this.listeners.offline);
    document.addEventListener("visibilitychange", this.listeners.visibilitychange);
  }

  get isUp() {
    return this.state === "up";
  }

  /** What carries the link now (or will, on the next attempt): websocket, sse or poll. */
  get kind() {
    return this.tx?.kind ?? this.chooser.current;
  }

  get limitMs() {
    return (this.heartbeat.interval + this.heartbeat.timeout) * 1000;
  }

  start() {
    this.state = "idle";
    this.connect();
  }

  /** Close for good (logout, or the page is leaving the chat). */
  stop() {
    const tx = this.tx;
    const wasUp = this.state === "up";
    this.state = "stopped";
    this.teardown();
    this.clearRetry();
    this.dropProbe();
    tx?.close();
    if (wasUp) this.hooks.down();
  }

  destroy() {
    this.stop();
    window.removeEventListener("online", this.listeners.online);
    window.removeEventListener("offline", this.listeners.offline);
    document.removeEventListener("visibilitychange", this.listeners.visibilitychange);
  }

  /** Reconnect now instead of waiting for the timer (the "Retry now" button). */
  retryNow() {
    if (this.state === "waiting") this.connect();
  }

  /** Send a frame when the link is up; false when it is not (the caller keeps the frame for later). */
  send(frame) {
    return this.state === "up" && this.tx !== null && this.tx.send(frame);
  }

  connect() {
    if (this.state === "stopped") return;
    this.clearRetry();
    if (this.tx !== null) return;
    this.sinceUsed = this.hooks.since();
    const kind = this.chooser.current;
    let tx;
    try {
      tx = openTransport(kind, this.sinceUsed, null, { pollWaitS: this.heartbeat.interval });
    } catch {
      this.lost(kind, null, "");
      return;
    }
    this.attach(tx);
    this.state = "connecting";
    this.connectStarted = Date.now();
    this.lastHeard = this.connectStarted;
    this.unansweredSince = null;
    this.watchdog = setInterval(() => this.check(), WATCHDOG_MS);
    this.hooks.status();
  }

  /** Make `tx` the link's transport: its events are the link's from now on. */
  attach(tx) {
    this.tx = tx;
    tx.handlers = {
      frame: (frame, ordered) => this.received(tx, frame, ordered),
      heard: () => {
        if (tx === this.tx) this.lastHeard = Date.now();
      },
      closed: (code, reason) => {
        if (tx === this.tx) this.lost(tx.kind, code, reason);
      },
    };
  }

  received(tx, frame, ordered) {
    if (tx !== this.tx) return;
    this.lastHeard = Date.now();
    this.unansweredSince = null;
    if (frame.type === "welcome") {
      if (frame.heartbeat) this.heartbeat = frame.heartbeat;
      this.state = "up";
      this.attempt = 0;
      this.everUp = true;
      this.chooser.succeeded(tx.kind);
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.ping(), this.heartbeat.interval * 1000);
      this.hooks.frame(frame, true);
      this.hooks.up();
      this.hooks.status();
      this.scheduleProbe();
      return;
    }
    this.hooks.frame(frame, ordered);
  }

  ping() {
    if (this.state !== "up") return;
    this.tx.send({ type: "ping", id: this.nextPingId++ });
    if (this.unansweredSince === null) this.unansweredSince = Date.now();
  }

  /** The watchdog: a handshake that takes too long, or a link that has gone silent, is dead. */
  check() {
    const now = Date.now();
    if (this.state === "connecting") {
      if (now - this.connectStarted > this.chooser.connectTimeoutMs(this.limitMs)) this.kill("connect timeout", true);
      return;
    }
    if (this.state !== "up" || now - this.lastHeard <= this.limitMs) return;
    if (this.unansweredSince === null) {
      // Silent, but we have not asked: our own timers were held back (a background tab, a machine that
      // slept). Ask now and judge by the answer.
      this.ping();
    } else if (now - this.unansweredSince >= this.heartbeat.timeout * 1000) {
      this.kill("heartbeat", false);
    }
  }

  /** Drop a link that is not answering, without waiting for a close handshake that would never come. */
  kill(why, timedOut) {
    const tx = this.tx;
    if (tx === null) return;
    tx.abort(why);
    this.lost(tx.kind, null, why, timedOut);
  }

  lost(kind, code, reason, timedOut = false) {
    const wasUp = this.state === "up";
    this.teardown();
    this.dropProbe();
    if (wasUp) {
      this.brokeAt = Date.now();
      this.hooks.down();
    }
    if (this.state === "stopped") return;
    if (code === 1008 && (reason === "logged out" || reason === "account removed")) {
      this.state = "idle";
      this.hooks.status();
      this.hooks.sessionEnded(reason);
      return;
    }
    const hinted = code === 1012 ? retryAfterMs(reason) : null;
    const cap = backoffCap(this.brokeAt === null ? null : Date.now() - this.brokeAt);
    const delay = hinted ?? backoffDelay(this.attempt++, Math.random, cap);
    this.schedule(delay);
    if (!wasUp) this.neverGotIn(kind, code, timedOut);
  }

  /**
   * An attempt ended before its `welcome`. Perhaps the login is over (the browser hides the handshake's 401
   * from us); perhaps this transport cannot get through while the server answers over HTTP: then the
   * chooser may move to the next one, and it is tried at once.
   */
  neverGotIn(kind, code, timedOut) {
    this.hooks.loginState().then((login) => {
      if (this.state === "stopped" || this.state === "up") return;
      if (login === "out") {
        this.clearRetry();
        this.dropAttempt();
        this.state = "idle";
        this.hooks.sessionEnded("expired");
        return;
      }
      if (!this.chooser.failed(kind, { code, timedOut, reachable: login === "in" })) return;
      this.dropAttempt();
      this.attempt = 0;
      this.connect();
    });
  }

  /** Give up an attempt that is still connecting (it is on a transport the chooser has left). */
  dropAttempt() {
    if (this.state !== "connecting" || this.tx === null) return;
    this.tx.abort("giving up");
    this.teardown();
    this.state = "waiting";
  }

  schedule(delay) {
    this.clearRetry();
    this.state = "waiting";
    this.retryAt = Date.now() + delay;
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.countdown = setInterval(() => this.hooks.status(), 500);
    this.hooks.status();
  }

  clearRetry() {
    clearTimeout(this.retryTimer);
    clearInterval(this.countdown);
    this.retryTimer = null;
    this.countdown = null;
  }

  teardown() {
    clearInterval(this.pingTimer);
    clearInterval(this.watchdog);
    this.pingTimer = null;
    this.watchdog = null;
    this.tx = null;
    this.unansweredSince = null;
  }

  // ------------------------------------------------------------ back to WebSocket from a fallback

  scheduleProbe() {
    clearTimeout(this.probeTimer);
    this.probeTimer = null;
    if (this.state !== "up" || !this.chooser.onFallback || this.probe !== null) return;
    this.probeTimer = setTimeout(() => this.tryWebSocket(), this.chooser.probeDelayMs());
  }

  /** A WebSocket beside the fallback, resuming from the cursor; if it gets its `welcome`, the link moves. */
  tryWebSocket() {
    this.probeTimer = null;
    if (this.state !== "up" || this.probe !== null) return;
    const since = this.hooks.since();
    let probe;
    try {
      probe = openTransport(WEBSOCKET, since, null, {});
    } catch {
      this.scheduleProbe();
      return;
    }
    const failed = () => {
      if (this.probe !== probe) return;
      this.dropProbe();
      this.scheduleProbe();
    };
    probe.handlers = {
      frame: (frame) => {
        if (this.probe === probe && frame.type === "welcome") this.moveTo(probe, since, frame);
      },
      heard: () => {},
      closed: failed,
    };
    this.probe = probe;
    this.probeGiveUp = setTimeout(() => {
      probe.abort("probe timeout");
      failed();
    }, WEBSOCKET_CONNECT_MS);
  }

  dropProbe() {
    clearTimeout(this.probeTimer);
    clearTimeout(this.probeGiveUp);
    this.probeTimer = null;
    const probe = this.probe;
    this.probe = null;
    probe?.abort("not needed");
  }

  /** The background WebSocket works: it becomes the link (with its own replay since `since`). */
  moveTo(probe, since, welcome) {
    clearTimeout(this.probeGiveUp);
    this.probe = null;
    const old = this.tx;
    this.teardown();
    old?.close();
    this.hooks.down();
    this.chooser.backToWebSocket();
    this.attach(probe);
    this.sinceUsed = since;
    this.state = "connecting";
    this.connectStarted = Date.now();
    this.watchdog = setInterval(() => this.check(), WATCHDOG_MS);
    this.received(probe, welcome, true);
  }

  // ------------------------------------------------------------ the browser's hints

  onOnline() {
    if (this.state === "waiting") {
      this.connect();
    } else if (this.state === "connecting" && Date.now() - this.connectStarted > 1000) {
      // An attempt started while the network was down may hang until its timeout: start afresh.
      const tx = this.tx;
      tx?.abort("network back");
      this.teardown();
      this.state = "waiting";
      this.connect();
    } else if (this.state === "up") {
      this.ping(); // is the old link still good? The watchdog will know.
    }
    this.hooks.status();
  }

  onVisibility() {
    if (document.hidden) {
      this.hiddenAt = Date.now();
      return;
    }
    if (this.hiddenAt === null) return;
    this.hiddenAt = null;
    if (this.state === "waiting") this.connect();
    else if (this.state === "up") this.ping();
  }
}
