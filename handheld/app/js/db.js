// The phone's own storage (IndexedDB): what must survive a closed app, a flat battery and a week
// in a basement. Stores:
//   kv       small named values: identity {device_id, device_secret}, session {token, expires},
//            me, seen notice/announcement ids, recent categories, patrol state, …
//   outbox   every uplink and photo, in the order the member made them (auto-increment key `n`)
//   refused  what the server refused (400 …) with its reason: shown to the member, never dropped
//   inbox    what the command center sent (notices, offers, announcements, check requests), by key

const NAME = "gcc-handheld";
const VERSION = 1;
let opened = null;

export function open() {
  if (!opened) {
    opened = new Promise((resolve, reject) => {
      const request = indexedDB.open(NAME, VERSION);
      request.onupgradeneeded = () => {
        const db = request.result;
        if (!db.objectStoreNames.contains("kv")) db.createObjectStore("kv");
        if (!db.objectStoreNames.contains("outbox")) db.createObjectStore("outbox", { keyPath: "n", autoIncrement: true });
        if (!db.objectStoreNames.contains("refused")) db.createObjectStore("refused", { keyPath: "n" });
        if (!db.objectStoreNames.contains("inbox")) db.createObjectStore("inbox", { keyPath: "key" });
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
      request.onblocked = () => reject(new Error("storage blocked by another tab"));
    });
  }
  return opened;
}

function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function store(name, mode = "readonly") {
  const db = await open();
  return db.transaction(name, mode).objectStore(name);
}

export async function get(name, key) { return done((await store(name)).get(key)); }
export async function all(name) { return done((await store(name)).getAll()); }
export async function count(name) { return done((await store(name)).count()); }
export async function put(name, value, key) {
  const s = await store(name, "readwrite");
  return done(key === undefined ? s.put(value) : s.put(value, key));
}
export async function del(name, key) { return done((await store(name, "readwrite")).delete(key)); }

export async function first(name) {
  const s = await store(name);
  return new Promise((resolve, reject) => {
    const request = s.openCursor();
    request.onsuccess = () => resolve(request.result ? request.result.value : null);
    request.onerror = () => reject(request.error);
  });
}

// one transaction: take `item` out of `from` and put `moved` into `to` (a refused message never
// exists in neither store, nor in both)
export async function move(from, key, to, moved) {
  const db = await open();
  const tx = db.transaction([from, to], "readwrite");
  tx.objectStore(from).delete(key);
  tx.objectStore(to).put(moved);
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("aborted"));
  });
}

// small named values
export const kv = {
  get: (key) => get("kv", key),
  set: (key, value) => put("kv", value, key),
  del: (key) => del("kv", key),
};

// a set of ids kept as a capped list in kv (the notices and announcements already shown)
export async function remember(setName, id, cap = 2000) {
  const list = (await kv.get(setName)) || [];
  if (list.includes(id)) return false;
  list.push(id);
  await kv.set(setName, list.slice(-cap));
  return true;
}

export async function remembers(setName, id) {
  return ((await kv.get(setName)) || []).includes(id);
}
