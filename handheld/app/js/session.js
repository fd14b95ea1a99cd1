// Who this phone is: enrolled once (device_id and device_secret kept in IndexedDB, the secret never
// shown), signed in each shift with the member's PIN (a session token kept until it expires), and
// what the server says the member is (GET /me, kept for offline starts).

import { call, read } from "./api.js";
import { kv } from "./db.js";

export const PIN = /^[0-9]{6}$/;

export async function identity() { return kv.get("identity"); }

export async function enrol(code, pin, label) {
  const answer = await call("POST", "/enrol", { auth: false, json: { code, pin, label } });
  if (!answer || typeof answer.device_id !== "string" || typeof answer.device_secret !== "string") {
    throw new Error("the server's answer has no device id");
  }
  await kv.set("identity", { device_id: answer.device_id, device_secret: answer.device_secret, enrolled_at: Date.now() });
  if (answer.member) await kv.set("me", answer.member);
  return answer;
}

export async function signIn(pin) {
  const id = await identity();
  if (!id) throw new Error("not enrolled");
  const answer = await call("POST", "/session", { auth: false,
    json: { device_id: id.device_id, device_secret: id.device_secret, pin } });
  await kv.set("session", { token: answer.token, expires: answer.expires });
  // what the member needs offline later, read now while the phone is online (the catalogue's words
  // are the server's: core/catalogue.py, never a copy in the app)
  await Promise.allSettled([me(), map(), catalogue()]);
  return answer;
}

export async function signedIn() {
  const session = await kv.get("session");
  return Boolean(session && (!session.expires || Date.parse(session.expires) > Date.now()));
}

// sign out on the server when it can be reached; the phone forgets its session either way (the
// outbox and the identity stay: what was made is still sent after the next sign-in)
export async function signOut() {
  try { await call("DELETE", "/session"); } catch { /* offline or already gone */ }
  await forgetSession();
}

export async function forgetSession() {
  await kv.del("session");
  if (window.caches) {
    for (const name of await caches.keys()) if (name.startsWith("gcc-handheld-api")) await caches.delete(name);
  }
}

// a read the app keeps for offline starts: the server's answer, else the last one kept
async function kept(path, key, fallback = null) {
  try {
    const { data } = await read(path);
    await kv.set(key, data);
    return data;
  } catch (e) {
    if (e.authLost) throw e;
    return (await kv.get(key)) || fallback;
  }
}

export const me = () => kept("/me", "me");
export const map = () => kept("/map", "map");
export const catalogue = () => kept("/catalogue", "catalogue", { incident_categories: [], diary_categories: [], severities: [] });
