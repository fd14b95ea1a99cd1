// The downlink: what the command center sends to this phone (case notices and offers, task items,
// announcements, alarm-check requests). The stream (GET /stream, server-sent events) is read with
// fetch, since it needs the Authorization header; on every (re)connect the phone first drains
// GET /outbox, so nothing written while it was away is missed. Each item is shown once (the
// notice_ids and announcement_ids already shown are kept), kept in the inbox store, then
// acknowledged (POST /outbox/ack) so the server stops holding it.

import { ApiError, call, send } from "./api.js";
import * as db from "./db.js";

const MIN_DELAY_MS = 1000;
const MAX_DELAY_MS = 60_000;
const listeners = new Set();
const stateListeners = new Set();
let controller = null;
let stopped = true;
let pendingAcks = new Set();
let ackTimer = null;
let connected = false;

export function onItem(listener) { listeners.add(listener); }
export function onState(listener) { stateListeners.add(listener); }
export function isConnected() { return connected; }
function setConnected(value) {
  if (connected === value) return;
  connected = value;
  for (const listener of stateListeners) listener(value);
}

// the key an item is shown once by: its notice or announcement id when it has one
export function itemKey(item) {
  const body = item && item.body && typeof item.body === "object" ? item.body : {};
  if (item.kind === "announcement" && body.announcement_id !== undefined) return `announcement:${body.announcement_id}`;
  if (body.notice_id !== undefined) return `notice:${body.notice_id}`;
  if (item.kind === "task" && body.task_id !== undefined) return `task:${body.task_id}`;
  return `item:${item.seq}`;
}

async function handle(item) {
  if (!item || typeof item !== "object" || !Number.isInteger(item.seq)) return;
  const key = itemKey(item);
  if (await db.remember("seen-downlink", key)) {
    await db.put("inbox", { key, seq: item.seq, kind: String(item.kind || "unknown"), body: item.body ?? {},
      created_at: item.created_at || null, received_at: Date.now(), done: false });
    for (const listener of listeners) {
      try { listener(await db.get("inbox", key)); } catch (e) { console.error(e); }
    }
  }
  queueAck(item.seq);
}

function queueAck(seq) {
  pendingAcks.add(seq);
  clearTimeout(ackTimer);
  ackTimer = setTimeout(flushAcks, 300);
}

async function flushAcks() {
  if (!pendingAcks.size) return;
  const seqs = [...pendingAcks];
  pendingAcks = new Set();
  try {
    await call("POST", "/outbox/ack", { json: { seqs } });
  } catch (e) {
    // not acknowledged: the server keeps them and sends them again; the seen ids make that harmless
    console.warn("ack failed", e);
  }
}

// everything not yet acknowledged, oldest first; returns the last seq seen
async function drainOutbox() {
  let after = 0;
  for (;;) {
    const answer = await call("GET", `/outbox?after=${after}`);
    const items = answer && Array.isArray(answer.items) ? answer.items : [];
    for (const item of items) {
      await handle(item);
      if (Number.isInteger(item.seq)) after = Math.max(after, item.seq);
    }
    if (items.length < 200) return after;
  }
}

// server-sent events from a byte stream: yields {id, event, data} for each event
export async function* events(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  let event = { data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
      if (line === "") {
        if (event.data.length) yield { id: event.id, event: event.event || "message", data: event.data.join("\n") };
        event = { data: [] };
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (name === "data") event.data.push(value);
        else if (name === "id" || name === "event") event[name] = value;
      }
    }
  }
}

async function connectOnce() {
  controller = new AbortController();
  // what waited first, then the stream from after it (the stream sends what is newer first, so an
  // item written between the two is not missed)
  const after = await drainOutbox();
  const response = await send("GET", `/stream?after=${after}`, { signal: controller.signal });
  setConnected(true);
  const reader = response.body.getReader();
  for await (const event of events(reader)) {
    let item;
    try { item = JSON.parse(event.data); } catch { console.warn("not JSON on the stream", event.data); continue; }
    await handle(item);
  }
}

// the browser knows it lost the network before a half-open stream does: end the stream then (the
// header says offline at once), and the loop below reconnects on the `online` event
let watchingOffline = false;

export function start() {
  if (!stopped) return;
  stopped = false;
  if (!watchingOffline) {
    window.addEventListener("offline", () => { if (controller) controller.abort(); });
    watchingOffline = true;
  }
  (async () => {
    let delay = MIN_DELAY_MS;
    while (!stopped) {
      const began = Date.now();
      try {
        await connectOnce();
      } catch (e) {
        if (e && e.name === "AbortError" && stopped) break;
        if (e instanceof ApiError && e.authLost) { stopped = true; break; }
      }
      setConnected(false);
      if (stopped) break;
      if (Date.now() - began > 30_000) delay = MIN_DELAY_MS;   // it had been up a while: start low again
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, delay * (0.5 + Math.random() * 0.5));
        window.addEventListener("online", () => { clearTimeout(timer); resolve(); }, { once: true });
      });
      delay = Math.min(MAX_DELAY_MS, delay * 2);
    }
    setConnected(false);
  })();
}

export function stop() {
  stopped = true;
  if (controller) controller.abort();
}

// what the inbox holds of a kind, newest first
export async function inbox(filter = () => true) {
  return (await db.all("inbox")).filter(filter).sort((a, b) => b.seq - a.seq);
}

export async function markDone(key) {
  const item = await db.get("inbox", key);
  if (item) { item.done = true; await db.put("inbox", item); }
}
