// 3 My tasks (事件处置): the offers made to me with a live countdown (accept, or decline with a
// reason), my open cases with their deadlines (on scene, handled with a note and after-photos,
// cannot handle with a reason, ask for more time), and the generic tasks of the task channel.

import { read } from "../api.js";
import { actionButton, caseCard, sentActions, ticker } from "../cases.js";
import * as downlink from "../downlink.js";
import { isoNow } from "../ids.js";
import * as outbox from "../outbox.js";
import { bi, button, fill, h, staleNote, toast } from "../ui.js";
import { NOTICE_WORDS } from "../words.js";
import { isCheckRequest } from "./sos.js";

const OPEN_ACTIONS = {
  // state → what the handler may do next (the cases engine decides; a wrong one is refused there)
  dispatched: ["accept", "reject"],
  accepted: ["start", "feedback", "extension", "reject"],
  handling: ["feedback", "extension", "reject"],
};

function actionsFor(card, c, after) {
  const row = h("div", { class: "row actions" });
  for (const action of OPEN_ACTIONS[c.state] || ["feedback", "extension"]) {
    if (action === "accept") row.append(actionButton(card, c, "accept", null, "primary", after));
    if (action === "reject") row.append(actionButton(card, c, "reject", { reason: ["原因", "the reason"] }, "ghost", after));
    if (action === "start") row.append(actionButton(card, c, "start", null, "primary", after));
    if (action === "feedback") {
      row.append(actionButton(card, c, "feedback", { note: ["处置说明", "what was done"],
        photos: { min: 1, max: 4, zh: "处置后照片", en: "after-photos" } }, "primary", after));
    }
    if (action === "extension") {
      row.append(actionButton(card, c, "extension", { extension: true, reason: ["延期原因", "why more time"] }, "ghost", after));
    }
  }
  return row;
}

function taskCard(item, after) {
  const body = item.body || {};
  const card = h("article", { class: "case-card" },
    h("h3", { text: String(body.title ?? body.description ?? body.task_id ?? "") }),
    h("p", { class: "muted", text: String(body.task_id ?? "") }),
    body.place || body.address ? h("p", { class: "place", text: String(body.place ?? body.address) }) : null);
  const ack = (action, zh, en) => button(zh, en, async () => {
    await outbox.enqueue("task/ack", { ts: isoNow(), task_id: String(body.task_id), action });
    if (action === "done" || action === "rejected") await downlink.markDone(item.key);
    toast(`已保存：${zh} · saved: ${en}`, "ok");
    after();
  }, action === "rejected" ? "ghost" : "primary");
  if (body.task_id !== undefined) {
    card.append(h("div", { class: "row actions" }, ack("accepted", "接受", "Accept"), ack("arrived", "已到达", "Arrived"),
      ack("done", "已完成", "Done"), ack("rejected", "拒绝", "Decline")));
  }
  return card;
}

export async function render(root) {
  const list = h("div");
  root.append(h("h2", { class: "screen-title" }, bi("我的任务", "My tasks")), list);
  let stopTicker = () => {};
  const load = async () => {
    stopTicker();
    let answer;
    try {
      answer = await read("/tasks");
    } catch (e) {
      if (e.authLost) return;
      fill(list, h("p", { class: "error" }, bi("任务暂不可用（离线且无缓存）", "Tasks not available (offline, nothing kept)")));
      return;
    }
    const { data, cachedAt } = answer;
    const sent = await sentActions();
    const offers = Array.isArray(data.offers) ? data.offers : [];
    const open = Array.isArray(data.open) ? data.open : [];
    const notices = await downlink.inbox((i) => i.kind === "notice" && !i.done && i.body && !isCheckRequest(i)
      && i.body.kind !== "verify");
    const tasks = await downlink.inbox((i) => i.kind === "task" && !i.done);
    const section = (zh, en, cards, emptyZh, emptyEn) => h("section", { class: "group" },
      h("h3", { class: "group-title" }, bi(`${zh}（${cards.length}）`, `${en} (${cards.length})`)),
      cards.length ? cards : h("p", { class: "muted empty" }, bi(emptyZh, emptyEn)));
    const cardOf = (c, offer) => {
      const card = caseCard(c, { sent: sent[c.case_id] });
      card.append(actionsFor(card, offer ? { ...c, state: "dispatched" } : c, load));
      return card;
    };
    fill(list, staleNote(cachedAt),
      notices.length ? h("section", { class: "group" }, h("h3", { class: "group-title" }, bi("新消息", "New messages")),
        ...notices.map((n) => {
          const words = NOTICE_WORDS[n.body.kind] || ["消息", String(n.body.kind ?? "message")];
          return h("p", { class: `notice ${n.body.kind === "rework" || n.body.kind === "escalated" ? "danger" : ""}`.trim() },
            bi(words[0], words[1]), " ", h("span", { text: String(n.body.title ?? n.body.case_id ?? "") }),
            n.body.reason ? h("span", { class: "muted", text: ` — ${n.body.reason}` }) : null);
        }),
        button("知道了", "Got it", async () => { for (const n of notices) await downlink.markDone(n.key); load(); }, "small ghost")) : null,
      section("待接单", "Offers", offers.map((c) => cardOf(c, true)), "没有新的派单", "no offers now"),
      section("处理中", "My open cases", open.map((c) => cardOf(c, false)), "没有进行中的案件", "no open cases"),
      tasks.length ? section("其他任务", "Other tasks", tasks.map((t) => taskCard(t, load)), "", "") : null);
    stopTicker = ticker(list);
  };
  await load();
  return {
    cleanup: () => stopTicker(),
    refresh: (item) => { if (item.kind === "notice" || item.kind === "task") load(); },
  };
}
