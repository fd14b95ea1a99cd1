// Talking to the server (docs/HANDHELD_API.md): one origin, JSON in and out, the session's bearer
// token on every call after the sign-in. A refusal is an ApiError with the server's reason; a
// failed connection is an ApiError with status 0 and reason "network".

import { kv } from "./db.js";

export const BASE = "/handheld/api/v1";
const AUTH_LOST = new Set(["no_session", "bad_session", "revoked_device"]);

export class ApiError extends Error {
  constructor(status, reason, detail = null, retryAfter = null) {
    super(`${status} ${reason}${detail ? `: ${detail}` : ""}`);
    this.status = status;
    this.reason = reason;
    this.detail = detail;
    this.retryAfter = retryAfter;      // seconds, from Retry-After
  }
  get authLost() { return (this.status === 401 || this.status === 403) && AUTH_LOST.has(this.reason); }
  get retryable() { return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500; }
}

// who listens for a lost session (the shell sends the member to the sign-in screen)
const authListeners = new Set();
export function onAuthLost(listener) { authListeners.add(listener); }
function authLost(error) { for (const listener of authListeners) listener(error.reason); }

export async function token() {
  const session = await kv.get("session");
  if (!session) return null;
  if (session.expires && Date.parse(session.expires) <= Date.now()) return null;
  return session.token;
}

async function errorOf(response) {
  let reason = `http_${response.status}`;
  let detail = null;
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") reason = body.error;
    if (body && typeof body.detail === "string") detail = body.detail;
  } catch { /* not JSON: the status says it */ }
  const after = Number(response.headers.get("Retry-After"));
  return new ApiError(response.status, reason, detail, Number.isFinite(after) && after > 0 ? after : null);
}

// fetch with the session; `auth: false` for enrol and sign-in. Returns the Response (ok), or throws.
export async function send(method, path, { json, body, contentType, auth = true, signal } = {}) {
  const headers = {};
  if (auth) {
    const bearer = await token();
    if (!bearer) {
      const error = new ApiError(401, "no_session");
      authLost(error);
      throw error;
    }
    headers.Authorization = `Bearer ${bearer}`;
  }
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (contentType) {
    headers["Content-Type"] = contentType;
  }
  let response;
  try {
    response = await fetch(BASE + path, { method, headers, body, signal, cache: "no-store", credentials: "omit" });
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError(0, "network", String(e && e.message || e));
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (error.authLost) authLost(error);
    throw error;
  }
  return response;
}

export async function call(method, path, options) {
  const response = await send(method, path, options);
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

// a GET through the service worker (network first, its last answer when offline): the answer and
// when it was fetched (null when fresh, else the time the cached copy was made)
export async function read(path) {
  const response = await send("GET", path);
  const cachedAt = response.headers.get("X-GCC-Cached-At");
  return { data: await response.json(), cachedAt: cachedAt ? new Date(cachedAt) : null };
}

// a photo of a case as a blob URL (it needs the bearer token, so an <img src> cannot fetch it)
export async function photoUrl(ref, thumb = true) {
  const hex = String(ref).replace(/^sha256:/, "");
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new ApiError(400, "bad_ref");
  const response = await send("GET", `/photos/${hex}${thumb ? "?thumb=1" : ""}`);
  return URL.createObjectURL(await response.blob());
}
