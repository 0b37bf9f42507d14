// The WebSocket link to the server: connect, keep it alive, notice when it dies, come back.
//
// - Application heartbeat: after `welcome`, a `ping` every heartbeat.interval seconds. When nothing at all
//   has arrived for interval + timeout seconds (and a ping of ours has gone unanswered for `timeout`), the
//   link is dead: it is dropped without waiting for a close handshake, and a new one is opened.
// - Reconnects back off exponentially with full jitter: a random delay up to 1 s, 2 s, 4 s ... capped at
//   30 s; the first `welcome` resets it. Close code 1012 (server restart) says when to come back instead.
//   In the first minute after a working link broke (a restart, a short network blip) the cap is 4 s, so
//   that a page comes back within seconds of the server, not half a minute later.
// - The `online` event and a tab coming back into view reconnect at once.
// - Close code 1008 "logged out" / "account removed" ends the link: the login session is over.

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

/** `ws` next to the page (so a path prefix is kept), `wss:` when the page came over HTTPS. */
export function socketUrl(since) {
  const url = new URL("ws", document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  if (since !== null && since !== undefined) url.searchParams.set("since", String(since));
  return url.href;
}

export class Link {
  /**
   * @param {object} hooks
   *   since(): the resume point to put in the URL (null for none)
   *   frame(frame): every frame from the server, `welcome` included
   *   up(): the link is usable (after `welcome`); down(): it is not any more
   *   status(): the state shown to the user changed (read `state`, `retryAt`, `everUp`)
   *   sessionEnded(reason): closed with 1008 logged out / account removed, or the login has expired
   *   stillLoggedIn(): resolves false when the login is known to be over (a refused handshake looks like any
   *     network failure in a browser, so the app asks the HTTP API)
   * @param {{interval: number, timeout: number}} heartbeat seconds, from api/config until `welcome` says
   */
  constructor(hooks, heartbeat) {
    this.hooks = hooks;
    this.heartbeat = heartbeat;
    this.ws = null;
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

  get limitMs() {
    return (this.heartbeat.interval + this.heartbeat.timeout) * 1000;
  }

  start() {
    this.state = "idle";
    this.connect();
  }

  /** Close for good (logout, or the page is leaving the chat). */
  stop() {
    const ws = this.ws;
    const wasUp = this.state === "up";
    this.state = "stopped";
    this.teardown();
    this.clearRetry();
    if (ws) {
      detach(ws);
      ws.close(1000, "bye");
    }
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
    if (this.state !== "up" || this.ws === null || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  connect() {
    if (this.state === "stopped") return;
    this.clearRetry();
    if (this.ws !== null) return;
    this.sinceUsed = this.hooks.since();
    let ws;
    try {
      ws = new WebSocket(socketUrl(this.sinceUsed));
    } catch {
      this.lost(null, "");
      return;
    }
    this.ws = ws;
    this.state = "connecting";
    this.connectStarted = Date.now();
    this.lastHeard = this.connectStarted;
    this.unansweredSince = null;
    ws.onmessage = (event) => this.received(ws, event);
    ws.onclose = (event) => {
      if (ws === this.ws) this.lost(event.code, event.reason);
    };
    this.watchdog = setInterval(() => this.check(), WATCHDOG_MS);
    this.hooks.status();
  }

  received(ws, event) {
    if (ws !== this.ws) return;
    this.lastHeard = Date.now();
    this.unansweredSince = null;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (frame.type === "welcome") {
      if (frame.heartbeat) this.heartbeat = frame.heartbeat;
      this.state = "up";
      this.attempt = 0;
      this.everUp = true;
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.ping(), this.heartbeat.interval * 1000);
      this.hooks.frame(frame);
      this.hooks.up();
      this.hooks.status();
      return;
    }
    this.hooks.frame(frame);
  }

  ping() {
    if (this.state !== "up") return;
    this.ws.send(JSON.stringify({ type: "ping", id: this.nextPingId++ }));
    if (this.unansweredSince === null) this.unansweredSince = Date.now();
  }

  /** The watchdog: a handshake that takes too long, or a link that has gone silent, is dead. */
  check() {
    const now = Date.now();
    if (this.state === "connecting") {
      if (now - this.connectStarted > this.limitMs) this.kill("connect timeout");
      return;
    }
    if (this.state !== "up" || now - this.lastHeard <= this.limitMs) return;
    if (this.unansweredSince === null) {
      // Silent, but we have not asked: our own timers were held back (a background tab, a machine that
      // slept). Ask now and judge by the answer.
      this.ping();
    } else if (now - this.unansweredSince >= this.heartbeat.timeout * 1000) {
      this.kill("heartbeat");
    }
  }

  /** Drop a link that is not answering, without waiting for a close handshake that would never come. */
  kill(why) {
    const ws = this.ws;
    if (ws === null) return;
    detach(ws);
    try {
      ws.close(4000, why);
    } catch {
      // already closing
    }
    this.lost(null, why);
  }

  lost(code, reason) {
    const wasUp = this.state === "up";
    this.teardown();
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
    if (!wasUp) {
      // Never got in: perhaps the login is over (the browser hides the handshake's 401 from us).
      this.hooks.stillLoggedIn().then((ok) => {
        if (!ok && this.state !== "stopped" && this.state !== "up") {
          this.clearRetry();
          this.state = "idle";
          this.hooks.sessionEnded("expired");
        }
      });
    }
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
    this.ws = null;
    this.unansweredSince = null;
  }

  onOnline() {
    if (this.state === "waiting") {
      this.connect();
    } else if (this.state === "connecting" && Date.now() - this.connectStarted > 1000) {
      // An attempt started while the network was down may hang until its timeout: start afresh.
      this.kill("network back");
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

function detach(ws) {
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = null;
  ws.onopen = null;
}
