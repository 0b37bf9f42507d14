// The HTTP side of the server: accounts, configuration and history.
// Every URL is relative to the page, so the app also works under a path prefix behind a proxy.

const REQUEST_TIMEOUT_MS = 10_000;

/** The server answered with an error: `status`, and the `code` and `message` of its JSON body. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfterS = 0) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
  }
}

/** The server could not be reached at all (offline, restarting, timed out). */
export class NetworkError extends Error {}

async function request(method, path, body) {
  const init = { method, credentials: "same-origin", cache: "no-store", signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) };
  if (body !== undefined) {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new NetworkError("the server cannot be reached");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    // Not JSON (a proxy's error page, say): the status says enough.
  }
  if (!response.ok) {
    const retryAfter = Number(response.headers.get("Retry-After")) || 0;
    throw new ApiError(response.status, data?.error ?? `http_${response.status}`, data?.message ?? response.statusText, retryAfter);
  }
  return data;
}

export const api = {
  config: () => request("GET", "api/config"),
  /**
   * Who is logged in; an ApiError with status 401 when nobody is. Asked of `api/session`, which answers 200
   * either way, so that a visit while logged out logs no failed request in the browser's console.
   */
  async me() {
    const who = await request("GET", "api/session");
    if (!who?.username) throw new ApiError(401, "no_token", "not logged in");
    return who;
  },
  login: (username, password) => request("POST", "api/login", password === null ? { username } : { username, password }),
  register: (username, password) => request("POST", "api/register", { username, password }),
  logout: () => request("POST", "api/logout"),
  changePassword: (password, newPassword) => request("POST", "api/password", { password, new_password: newPassword }),
  /** A page of history, newest first: `{messages, more}`. `target` is `{room}` or `{with: user}`. */
  history(target, before = null, limit = 50) {
    const query = new URLSearchParams(target.room ? { room: target.room } : { with: target.with });
    if (before !== null) query.set("before", String(before));
    query.set("limit", String(limit));
    return request("GET", `api/history?${query}`);
  },
};
