// 6 Announcements (通知公告): my grid's and the org units' above it, newest first; each one shown
// sends its read receipt (announcement/read) once.

import { read } from "../api.js";
import * as db from "../db.js";
import * as downlink from "../downlink.js";
import { isoNow, timeWords } from "../ids.js";
import * as outbox from "../outbox.js";
import { bi, fill, h, staleNote } from "../ui.js";

async function receipt(id) {
  if (!Number.isInteger(id) || id <= 0) return;
  if (await db.remember("read-sent", id)) await outbox.enqueue("announcement/read", { ts: isoNow(), announcement_id: id });
}

export async function render(root) {
  const list = h("div");
  root.append(h("h2", { class: "screen-title" }, bi("通知公告", "Announcements")), list);
  const load = async () => {
    let listed = [], cachedAt = null;
    try {
      const answer = await read("/announcements");
      listed = Array.isArray(answer.data) ? answer.data : Array.isArray(answer.data.announcements) ? answer.data.announcements : [];
      cachedAt = answer.cachedAt;
    } catch (e) {
      if (e.authLost) return;
    }
    // what the downlink brought and the list does not have yet (offline, or just sent)
    const pushed = await downlink.inbox((i) => i.kind === "announcement");
    const byId = new Map();
    for (const a of listed) byId.set(a.announcement_id, a);
    for (const i of pushed) if (i.body && !byId.has(i.body.announcement_id)) byId.set(i.body.announcement_id, i.body);
    const all = [...byId.values()].sort((a, b) => String(b.ts ?? "").localeCompare(String(a.ts ?? "")));
    fill(list, staleNote(cachedAt), ...(all.length ? all.map((a) => h("article", { class: `announcement ${a.read ? "" : "unread"}`.trim() },
      h("h3", { text: a.title ?? "" }),
      h("p", { class: "muted" }, h("span", { text: a.org_name ?? "" }), " · ", h("span", { text: timeWords(a.ts) }),
        a.sender ? h("span", { text: ` · ${a.sender}` }) : null),
      h("p", { class: "announcement-body", text: a.body ?? "" }),
      a.expires ? h("p", { class: "muted small" }, bi(`有效期至 ${timeWords(a.expires)}`, `until ${timeWords(a.expires)}`)) : null))
      : [h("p", { class: "muted empty" }, bi("暂无通知", "no announcements"))]));
    for (const a of all) await receipt(Number(a.announcement_id));
    for (const i of pushed) if (!i.done) await downlink.markDone(i.key);
  };
  await load();
  return { refresh: (item) => { if (item.kind === "announcement") load(); } };
}
