// The phone's position and the patrol: while on patrol and the app is open, the GPS is watched and
// a fix is put in the outbox every 10 s when the phone has a newer position (at least 5 s apart),
// with the battery level when the browser tells it. Background tracking stays with OwnTracks or
// Traccar Client (README): a web page stops when the phone sleeps, so the patrol also asks for a
// screen wake lock while it runs.

import { kv } from "./db.js";
import { isoNow } from "./ids.js";
import { enqueue } from "./outbox.js";

const FIX_EVERY_MS = 10_000;
const MIN_GAP_MS = 5_000;
const listeners = new Set();
let last = null;              // the newest GeolocationPosition
let watchId = null;
let patrolTimer = null;
let lastSentAt = 0;           // the position time of the last fix sent
let wakeLock = null;
let battery = null;

export function onPosition(listener) { listeners.add(listener); return () => listeners.delete(listener); }
export function latest() { return last; }
export function onPatrol() { return patrolTimer !== null; }

function watch() {
  if (watchId !== null || !navigator.geolocation) return;
  watchId = navigator.geolocation.watchPosition((position) => {
    last = position;
    for (const listener of listeners) listener(position);
  }, (error) => console.warn("geolocation", error.message), { enableHighAccuracy: true, maximumAge: 5000, timeout: 30_000 });
}

export function startWatching() { watch(); }

// one position now (the SOS, a report): the newest one if recent, else ask, else the last known
export function current(timeoutMs = 8000) {
  return new Promise((resolve) => {
    if (last && Date.now() - last.timestamp < 15_000) { resolve(last); return; }
    if (!navigator.geolocation) { resolve(last); return; }
    navigator.geolocation.getCurrentPosition((position) => { last = position; resolve(position); },
      () => resolve(last), { enableHighAccuracy: true, maximumAge: 10_000, timeout: timeoutMs });
  });
}

export async function batteryPct() {
  try {
    if (!battery && navigator.getBattery) battery = await navigator.getBattery();
    return battery ? Math.round(battery.level * 100) : null;
  } catch { return null; }
}

// a fix for the wire format from a GeolocationPosition
export async function fixOf(position) {
  const c = position.coords;
  const body = { ts: isoNow(new Date(position.timestamp)), lat: c.latitude, lon: c.longitude };
  if (Number.isFinite(c.accuracy)) body.accuracy_m = Math.max(0, c.accuracy);
  if (Number.isFinite(c.speed) && c.speed !== null) body.speed_mps = Math.max(0, c.speed);
  if (Number.isFinite(c.heading) && c.heading !== null) body.heading_deg = ((c.heading % 360) + 360) % 360;
  if (Number.isFinite(c.altitude) && c.altitude !== null) body.altitude_m = c.altitude;
  const pct = await batteryPct();
  if (pct !== null) body.battery_pct = Math.min(100, Math.max(0, pct));
  return body;
}

async function tick() {
  if (!last || last.timestamp - lastSentAt < MIN_GAP_MS) return;
  lastSentAt = last.timestamp;
  await enqueue("fix", await fixOf(last));
  const track = (await kv.get("track")) || { day: "", points: [] };
  const day = new Date().toDateString();
  const points = track.day === day ? track.points : [];
  points.push([last.coords.longitude, last.coords.latitude]);
  await kv.set("track", { day, points: points.slice(-5000) });
}

export async function startPatrol() {
  watch();
  if (patrolTimer === null) patrolTimer = setInterval(() => tick().catch(console.error), FIX_EVERY_MS);
  await kv.set("patrol", { on: true, since: Date.now() });
  try { if (navigator.wakeLock && !wakeLock) await lockScreen(); } catch { /* not granted */ }
  tick().catch(console.error);
}

export async function stopPatrol() {
  clearInterval(patrolTimer);
  patrolTimer = null;
  await kv.set("patrol", { on: false });
  if (wakeLock) { wakeLock.release().catch(() => {}); wakeLock = null; }
}

// the app was closed on patrol: carry on when it opens again
export async function resumePatrol() {
  const patrol = await kv.get("patrol");
  if (patrol && patrol.on) await startPatrol();
}

export async function todayTrack() {
  const track = await kv.get("track");
  return track && track.day === new Date().toDateString() ? track.points : [];
}

document.addEventListener("visibilitychange", async () => {
  if (document.visibilityState === "visible" && patrolTimer !== null && !wakeLock && navigator.wakeLock) {
    try { await lockScreen(); } catch { /* not granted */ }
  }
});

async function lockScreen() {
  wakeLock = await navigator.wakeLock.request("screen");
  wakeLock.addEventListener("release", () => { wakeLock = null; });
}
