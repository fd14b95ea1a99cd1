// The persistent outbox: every uplink (and every photo, as a Blob) is written to IndexedDB first,
// with its own id and time made when the member acted, then sent in the order it was made (a
// report's photos before the report naming them). An item leaves the outbox only when the server
// answered 2xx (committed), or when it refused it for good (400 and the like): then it moves to the
// refused list with the server's reason, which the member sees — never a silent drop. A network
// error, a 5xx or a 429 keeps it at the head and tries again with exponential backoff (1 s … 5 min,
// with jitter; Retry-After when the server says), and at once when the phone comes back online.
// A lost session pauses the outbox (nothing is dropped) until the member signs in again.

import { ApiError, send } from "./api.js";
import * as db from "./db.js";

const MIN_DELAY_S = 1;
const MAX_DELAY_S = 300;
const TIMEOUT_MS = { photo: 120_000, message: 60_000 };
// any leaf of the terminal contract, and the ones still to come (registration forms): path words
const LEAF = /^[a-z][a-z0-9_]*(\/[a-z][a-z0-9_]*)*$/;

const listeners = new Set();
let running = false;
let again = false;
let paused = false;
let timer = null;
let lastError = null;

export function onChange(listener) { listeners.add(listener); return () => listeners.delete(listener); }

async function changed() {
  const state = await status();
  for (const listener of listeners) listener(state);
}

export async function status() {
  return { waiting: await db.count("outbox"), refused: await db.count("refused"), paused, lastError };
}

// an uplink of `leaf` (fix, status, incident, case, task/ack, announcement/read, diary, alarm/check,
// or a registration form's leaf when it comes): stored now, sent when it can be
export async function enqueue(leaf, body) {
  if (typeof leaf !== "string" || leaf.length > 64 || !LEAF.test(leaf)) {
    throw new Error(`not a message leaf: ${JSON.stringify(leaf)}`);
  }
  if (!body || typeof body !== "object" || Array.isArray(body) || typeof body.ts !== "string") {
    throw new Error("a message is an object with its own ts");
  }
  const n = await db.put("outbox", { kind: "message", leaf, body, made_at: Date.now(), attempts: 0, next_at: 0 });
  changed();
  pump();
  return n;
}

// a photo made ready by photos.js ({blob, ref}); enqueue it before the message that names it
export async function enqueuePhoto(photo) {
  if (!(photo && photo.blob instanceof Blob && /^sha256:[0-9a-f]{64}$/.test(photo.ref))) {
    throw new Error("a photo is a Blob with its sha256 ref");
  }
  const n = await db.put("outbox", { kind: "photo", blob: photo.blob, ref: photo.ref, type: photo.blob.type || "image/jpeg",
    made_at: Date.now(), attempts: 0, next_at: 0 });
  changed();
  pump();
  return n;
}

export async function items() { return db.all("outbox"); }
export async function refusedItems() { return db.all("refused"); }
export async function forgetRefused(n) { await db.del("refused", n); changed(); }

// the member signed in again: carry on
export function resume() { paused = false; lastError = null; changed(); pump(); }

// the phone is online again: what waits is tried now, not after its backoff
export async function retryNow() {
  const head = await db.first("outbox");
  if (head && head.next_at > Date.now()) {
    head.next_at = 0;
    await db.put("outbox", head);
  }
  pump();
}

async function sendItem(item) {
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(), TIMEOUT_MS[item.kind] || 60_000);
  try {
    if (item.kind === "photo") {
      await send("POST", "/photos", { body: item.blob, contentType: item.type, signal: controller.signal });
    } else {
      // a registration has its own endpoint (not the ingest chain); every other leaf is a terminal message
      const path = item.leaf === "ledger/submissions" ? `/${item.leaf}` : `/messages/${item.leaf}`;
      await send("POST", path, { json: item.body, signal: controller.signal });
    }
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw new ApiError(0, "network", e && e.name === "AbortError" ? "no answer in time" : String(e));
  } finally {
    clearTimeout(timeout);
  }
}

function backoffSeconds(attempts, retryAfter) {
  const exp = Math.min(MAX_DELAY_S, MIN_DELAY_S * 2 ** Math.max(0, attempts - 1));
  const jittered = exp * (0.5 + Math.random() * 0.5);
  return Math.max(MIN_DELAY_S, retryAfter ? Math.min(retryAfter, 3600) : jittered);
}

function schedule(at) {
  clearTimeout(timer);
  timer = setTimeout(pump, Math.max(0, at - Date.now()));
}

// send what waits, oldest first, one at a time (a phone has one sender: the Web Locks API keeps a
// second open tab from sending the same items at the same time)
export function pump() {
  if (running) { again = true; return; }
  running = true;
  const run = async () => {
    do {
      again = false;
      await drain();
    } while (again);
  };
  const locked = navigator.locks ? navigator.locks.request("gcc-handheld-outbox", run) : run();
  locked.catch((e) => { lastError = String(e); }).finally(() => { running = false; changed(); });
}

async function drain() {
  while (!paused) {
    const item = await db.first("outbox");
    if (!item) { lastError = null; return; }
    if (item.next_at > Date.now()) { schedule(item.next_at); return; }
    try {
      await sendItem(item);
      await db.del("outbox", item.n);
      lastError = null;
    } catch (e) {
      if (e.authLost) { paused = true; lastError = e.reason; return; }
      if (e.retryable) {
        item.attempts += 1;
        item.next_at = Date.now() + backoffSeconds(item.attempts, e.retryAfter) * 1000;
        item.last_error = e.reason;
        await db.put("outbox", item);
        lastError = e.reason;
        schedule(item.next_at);
        await changed();
        return;
      }
      // refused for good (400, 403 not_yours, 404, 409, 413, 415 …): kept, with why, for the member
      const { blob, ...kept } = item;
      await db.move("outbox", item.n, "refused", { ...kept, photo_size: blob ? blob.size : undefined,
        status: e.status, reason: e.reason, detail: e.detail, refused_at: Date.now() });
    }
    await changed();
  }
}

export function start() {
  window.addEventListener("online", () => retryNow());
  changed();
  pump();
}
