// The service worker of 网格通: the app shell from a versioned cache (the app starts with no
// signal), the API's reads network-first with their last answer kept for offline, and nothing else:
// never a POST, never the stream, the downlink's outbox or a photo (they need the network, and the
// app's own outbox in IndexedDB keeps what the member made).
//
// The version is the digest of the app's files, written in when the server serves this file
// (handheld/static.py), so any change installs a new shell; the page offers the update and this
// worker takes over when the member taps it.

const VERSION = "__APP_VERSION__";
const SHELL_CACHE = `gcc-handheld-shell-${VERSION}`;
const API_CACHE = "gcc-handheld-api-v1";
const API = "/handheld/api/v1/";
const SHELL = [
  "./", "index.html", "app.css", "manifest.webmanifest",
  "icons/icon.svg", "icons/icon-192.png", "icons/icon-512.png", "icons/lucide.svg",
  "js/main.js", "js/api.js", "js/db.js", "js/outbox.js", "js/downlink.js", "js/photos.js", "js/picker.js",
  "js/ids.js", "js/ui.js", "js/words.js", "js/map.js", "js/position.js", "js/session.js", "js/cases.js",
  "js/screens/signin.js", "js/screens/today.js", "js/screens/report.js", "js/screens/tasks.js",
  "js/screens/verify.js", "js/screens/sos.js", "js/screens/announcements.js", "js/screens/diary.js",
  "js/screens/more.js", "js/screens/queue.js", "js/register.js",
];
// reads kept for offline (network first); everything else under the API goes to the network only
const CACHED_READS = /^\/handheld\/api\/v1\/(me|map|catalogue|tasks|verify|announcements|coverage|cases\/[^/]+|ledger\/(words|buildings|buildings\/[^/]+|things|submissions))$/;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL_CACHE).then((cache) => cache.addAll(SHELL.map((path) => new Request(path, { cache: "reload" })))));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith("gcc-handheld-shell-") && name !== SHELL_CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener("message", (event) => {
  if (event.data === "skipWaiting") self.skipWaiting();
});

async function networkFirst(request) {
  const cache = await caches.open(API_CACHE);
  try {
    const response = await fetch(request);
    if (response.status === 200) {
      // kept with the time it was fetched, which the app shows when it answers from here
      const headers = new Headers(response.headers);
      headers.set("X-GCC-Cached-At", new Date().toISOString());
      const body = await response.clone().blob();
      await cache.put(request.url, new Response(body, { status: 200, headers }));
    } else if (response.status === 401 || response.status === 403) {
      await caches.delete(API_CACHE);    // signed out or revoked: nothing of the member stays here
    }
    return response;
  } catch (error) {
    const cached = await cache.match(request.url);
    if (cached) return cached;
    throw error;
  }
}

async function shellFirst(request) {
  const cache = await caches.open(SHELL_CACHE);
  const url = new URL(request.url);
  const cached = await cache.match(request.mode === "navigate" ? "index.html" : url.pathname, { ignoreSearch: true });
  return cached || fetch(request);
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;                        // a POST is never cached
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || !url.pathname.startsWith("/handheld/")) return;
  if (url.pathname.startsWith(API)) {
    if (CACHED_READS.test(url.pathname)) event.respondWith(networkFirst(request));
    return;                                                   // the stream, the outbox, photos: network only
  }
  event.respondWith(shellFirst(request));
});
