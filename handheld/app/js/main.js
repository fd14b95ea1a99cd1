// The shell: hash routes to one module per screen, the bar of what waits to be sent, the header
// (who, connection, SOS), the badges, the service worker, and the way back to the sign-in screen
// when the server says the session or the phone is no longer good.

import { onAuthLost } from "./api.js";
import * as downlink from "./downlink.js";
import * as outbox from "./outbox.js";
import * as position from "./position.js";
import * as registration from "./register.js";
import * as session from "./session.js";
import { bi, h, toast } from "./ui.js";
import { NOTICE_WORDS, reasonWords } from "./words.js";
import * as announcements from "./screens/announcements.js";
import * as diary from "./screens/diary.js";
import * as more from "./screens/more.js";
import * as queue from "./screens/queue.js";
import * as report from "./screens/report.js";
import * as signin from "./screens/signin.js";
import * as sos from "./screens/sos.js";
import * as tasks from "./screens/tasks.js";
import * as today from "./screens/today.js";
import * as verify from "./screens/verify.js";

const SCREENS = { today, report, tasks, verify, sos, more, announcements, diary, registration, outbox: queue };
const screenEl = document.getElementById("screen");
let current = null;          // {name, cleanup, refresh}
let booted = false;
let authReason = null;

export const ctx = {
  me: null,
  go(route) { if (location.hash !== `#${route}`) location.hash = route; else render(); },
};

function routeName() {
  const hash = location.hash.replace(/^#/, "");
  return hash.split(/[=/?]/, 1)[0] || "today";
}

// the screen in place is left (its timers stopped) only once the next one is known
function leave() {
  if (current && current.cleanup) current.cleanup();
  current = null;
}

// Renders can overlap (a tap, and a refusal on the stream, each send the member somewhere): each
// render has a number, and one that a newer render overtook while it waited draws nothing. The
// sign-in screen already shown for the same reason is kept, so a second refusal (the stream's and
// the screen's, one after the other) never wipes the PIN the member is typing.
let renderSeq = 0;

async function render() {
  const seq = ++renderSeq;
  const stale = () => seq !== renderSeq;
  const hash = location.hash.replace(/^#/, "");
  if (hash.startsWith("enrol=")) {
    leave();
    showShell(false);
    current = { name: "enrol", ...(await signin.renderEnrol(screenEl, decodeURIComponent(hash.slice(6)), afterSignIn)) };
    return;
  }
  if (!(await session.identity())) {
    if (stale()) return;
    leave();
    showShell(false);
    current = { name: "signin", ...(await signin.renderNotEnrolled(screenEl)) };
    return;
  }
  if (!(await session.signedIn())) {
    if (stale()) return;
    if (current && current.name === "signin" && current.reason === authReason) return;
    leave();
    showShell(false);
    current = { name: "signin", reason: authReason, ...(await signin.renderSignIn(screenEl, authReason, afterSignIn)) };
    return;
  }
  if (!booted) await boot();
  if (stale()) return;
  leave();
  showShell(true);
  const name = SCREENS[routeName()] ? routeName() : "today";
  for (const a of document.querySelectorAll("#tabs a")) a.setAttribute("aria-current", String(a.dataset.route === name));
  screenEl.replaceChildren();
  screenEl.scrollTop = 0;
  window.scrollTo(0, 0);
  try {
    const shown = { name, ...((await SCREENS[name].render(screenEl, ctx)) || {}) };
    if (stale()) { if (shown.cleanup) shown.cleanup(); return; }
    current = shown;
  } catch (e) {
    console.error(e);
    if (e && e.authLost) return;
    screenEl.replaceChildren(h("p", { class: "error" }, bi("出错了", "Something went wrong"), " ",
      h("span", { text: e && e.reason ? reasonWords(e.reason, e.detail) : String(e && e.message || e) })));
  }
  refreshBadges();
}

function showShell(on) {
  document.body.classList.toggle("signed-out", !on);
}

async function afterSignIn() {
  authReason = null;
  outbox.resume();
  if (booted) downlink.start();
  ctx.go("today");
}

async function boot() {
  booted = true;
  ctx.me = await session.me().catch(() => null);
  const who = document.getElementById("who");
  if (ctx.me) who.replaceChildren(h("span", { class: "who-name", text: ctx.me.name || "" }),
    h("span", { class: "who-grid", text: ctx.me.grid_name || ctx.me.grid_code || "" }));
  outbox.start();
  downlink.start();
  position.resumePatrol().catch(console.error);
}

function drawBar({ waiting, refused, paused, lastError }) {
  const bar = document.getElementById("outbox-bar");
  bar.hidden = !waiting && !refused;
  bar.classList.toggle("warn", Boolean(refused));
  const parts = [];
  if (waiting) {
    parts.push(bi(`${waiting} 条待发送`, `${waiting} waiting to send`));
    if (paused) parts.push(bi("登录后发送", "sent after sign-in", "sub"));
    else if (lastError) parts.push(h("span", { class: "sub", text: reasonWords(lastError) }));
  }
  if (refused) parts.push(bi(`${refused} 条被拒收，点此查看`, `${refused} refused: tap to see`, "refused"));
  bar.replaceChildren(...parts);
}

function drawLink(connected) {
  const link = document.getElementById("link");
  link.className = `link ${connected ? "on" : "off"}`;
  link.replaceChildren(bi(connected ? "在线" : "离线", connected ? "online" : "offline"));
}

async function refreshBadges() {
  const items = await downlink.inbox((i) => !i.done);
  const count = (f) => items.filter(f).length;
  const kindOf = (i) => (i.body && i.body.kind) || "";
  const set = (id, n) => { const b = document.getElementById(id); b.hidden = !n; b.textContent = String(n); };
  set("badge-verify", count((i) => i.kind === "notice" && kindOf(i) === "verify"));
  set("badge-tasks", count((i) => (i.kind === "notice" || i.kind === "task") && !["verify", "check"].includes(kindOf(i))));
  set("badge-more", count((i) => i.kind === "announcement"));
  document.getElementById("sos-link").classList.toggle("alert", count(sos.isCheckRequest) > 0);
}

function announce(item) {
  const body = item.body || {};
  if (item.kind === "announcement") {
    toast(`通知公告 Announcement: ${String(body.title ?? "")}`);
  } else if (sos.isCheckRequest(item)) {
    toast(`紧急核实 Check an alarm: ${String(body.title ?? body.sensor_id ?? "")}`, "error");
  } else {
    const words = NOTICE_WORDS[body.kind] || ["新消息", "New message"];
    toast(`${words[0]} ${words[1]}: ${String(body.title ?? body.case_id ?? "")}`);
  }
  refreshBadges();
  if (current && current.refresh) current.refresh(item);
}

async function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return;
  try {
    const registration = await navigator.serviceWorker.register("sw.js", { scope: "./", type: "classic" });
    const offer = (worker) => {
      const bar = document.getElementById("update-bar");
      bar.hidden = false;
      bar.onclick = () => worker.postMessage("skipWaiting");
    };
    if (registration.waiting && navigator.serviceWorker.controller) offer(registration.waiting);
    registration.addEventListener("updatefound", () => {
      const worker = registration.installing;
      worker.addEventListener("statechange", () => {
        if (worker.state === "installed" && navigator.serviceWorker.controller) offer(worker);
      });
    });
    let reloading = false;
    navigator.serviceWorker.addEventListener("controllerchange", () => {
      if (!reloading && !document.getElementById("update-bar").hidden) { reloading = true; location.reload(); }
    });
  } catch (e) {
    console.warn("service worker not registered", e);
  }
}

onAuthLost(async (reason) => {
  authReason = reason;
  downlink.stop();
  await session.forgetSession();
  render();          // the sign-in screen with the reason (kept as it is when it already says so)
});
outbox.onChange(drawBar);
downlink.onState(drawLink);
downlink.onItem(announce);
document.getElementById("outbox-bar").addEventListener("click", () => ctx.go("outbox"));
window.addEventListener("hashchange", render);
drawLink(false);
registerServiceWorker();
render();
