// What the task and verify screens share: a case's card (category, title, place, state, the live
// countdown to its deadline), its details on demand (GET /cases/{id}: report text, photos,
// history), the small forms of an answer (a reason, a note and photos, a time limit), and the
// answer itself as a `case` message through the outbox.

import { call, photoUrl } from "./api.js";
import { kv } from "./db.js";
import { countdownWords, isoNow, secondsUntil, timeWords } from "./ids.js";
import * as outbox from "./outbox.js";
import { photoPicker } from "./picker.js";
import { add, bi, button, choices, field, h, icon, toast } from "./ui.js";
import { CASE_ACTION_WORDS, EXTENSIONS, reasonWords } from "./words.js";

// a case update (docs/WIRE_FORMAT.md `…/case`), photos first
export async function sendCaseAction(caseId, action, { note, reason, extension, photos = [] } = {}) {
  for (const photo of photos) await outbox.enqueuePhoto(photo);
  const body = { ts: isoNow(), case_id: caseId, action };
  if (note) body.note = note;
  if (reason) body.reason = reason;
  if (extension) body.extension = extension;
  if (photos.length) body.photo_refs = photos.map((p) => p.ref);
  await outbox.enqueue("case", body);
  const sent = (await kv.get("case-actions")) || {};
  sent[caseId] = { action, at: Date.now() };
  await kv.set("case-actions", sent);
}

export async function sentActions() { return (await kv.get("case-actions")) || {}; }

// the countdown elements of a screen, ticking once a second
export function ticker(root) {
  const tick = () => {
    for (const el of root.querySelectorAll("[data-deadline]")) {
      const seconds = secondsUntil(el.dataset.deadline);
      const [zh, en] = countdownWords(seconds);
      el.replaceChildren(icon("clock"), bi(zh, en));
      el.classList.toggle("overdue", seconds !== null && seconds < 0);
      el.classList.toggle("soon", seconds !== null && seconds >= 0 && seconds < 15 * 60);
    }
  };
  tick();
  const timer = setInterval(tick, 1000);
  return () => clearInterval(timer);
}

function sentLine(sent) {
  const [zh, en] = CASE_ACTION_WORDS[sent.action] || [sent.action, sent.action];
  return h("p", { class: "sent" }, bi(`已提交：${zh}`, `sent: ${en}`), " · ",
    h("span", { class: "muted", text: timeWords(sent.at) }));
}

export function caseCard(c, { sent } = {}) {
  const deadline = c.deadline ? h("p", { class: "deadline", dataset: { deadline: String(c.deadline) } }) :
    h("p", { class: "deadline muted" }, bi("无时限", "no time limit"));
  const details = h("div", { class: "details" });
  let open = false;
  const card = h("article", { class: `case-card ${c.urgency === "urgent" ? "urgent" : ""}`.trim(), dataset: { caseId: String(c.case_id ?? "") } },
    h("header", {}, icon(String(c.category ?? ""), "case-icon"),
      h("div", { class: "case-head" },
        h("h3", { text: c.title || c.category_label || c.category || "" }),
        h("p", { class: "muted" }, h("span", { text: c.case_id ?? "" }), " · ", h("span", { text: c.state_label || c.state || "" }),
          c.urgency === "urgent" ? h("span", { class: "tag urgent" }, bi("紧急", "urgent")) : null))),
    c.place ? h("p", { class: "place" }, icon("pin"), h("span", { text: c.place })) : null,
    deadline,
    sent ? sentLine(sent) : null);
  const toggle = button("详情", "Details", async () => {
    open = !open;
    if (!open) { details.replaceChildren(); return; }
    details.replaceChildren(h("p", { class: "muted" }, bi("加载中…", "loading…")));
    try {
      details.replaceChildren(await caseDetails(c.case_id));
    } catch (e) {
      details.replaceChildren(h("p", { class: "error", text: reasonWords(e.reason || "network", e.detail) }));
    }
  }, "small ghost");
  card.append(toggle, details);
  return card;
}

async function caseDetails(caseId) {
  const c = await call("GET", `/cases/${encodeURIComponent(caseId)}`);
  const photos = h("div", { class: "thumbs" });
  for (const p of Array.isArray(c.photos) ? c.photos : []) {
    const figure = h("figure", { class: "thumb" }, h("figcaption", { text: { report: "上报 before", feedback: "处置 after",
      verify: "核查 verify" }[p.stage] || String(p.stage ?? "") }));
    photos.append(figure);
    photoUrl(p.ref).then((url) => figure.prepend(h("img", { src: url, alt: String(p.stage ?? "") })))
      .catch(() => figure.prepend(h("span", { class: "muted" }, bi("照片暂不可用", "photo not available"))));
  }
  const history = Array.isArray(c.history) ? c.history : [];
  const reports = Array.isArray(c.reports) ? c.reports : [];
  return h("div", {},
    ...reports.map((r) => h("p", { class: "report-text" }, h("span", { class: "muted", text: `${timeWords(r.time)} ` }),
      h("span", { text: r.description ?? "" }), r.address ? h("span", { class: "muted", text: ` · ${r.address}` }) : null)),
    photos,
    history.length ? h("ol", { class: "history" }, ...history.map((e) => h("li", {},
      h("span", { class: "muted", text: timeWords(e.time) }), " ",
      h("span", { text: `${e.command ?? ""}${e.to_state ? ` → ${e.to_state}` : ""}` }),
      e.reason ? h("span", { class: "muted", text: ` — ${e.reason}` }) : null))) : null);
}

// a small form under a card: what the answer needs, then confirm / cancel. `needs`: reason, note,
// photos ({min, max}), extension; returns a Promise of the values or null when cancelled.
export function answerForm(card, title, needs) {
  return new Promise((resolve) => {
    const form = h("div", { class: "answer" });
    const reason = needs.reason ? h("textarea", { rows: 3, maxlength: "500" }) : null;
    const note = needs.note ? h("textarea", { rows: 3, maxlength: "2000" }) : null;
    const picker = needs.photos ? photoPicker({ max: needs.photos.max || 4 }) : null;
    let extension = needs.extension ? EXTENSIONS[0].value : null;
    const error = h("p", { class: "error", role: "alert", hidden: true });
    const close = (value) => { form.remove(); if (picker && !value) picker.clear(); resolve(value); };
    add(form, h("h4", {}, bi(title[0], title[1])),
      needs.extension ? choices(EXTENSIONS.map((e) => ({ value: e.value, zh: e.zh, en: e.en })), extension,
        (v) => { extension = v; }) : null,
      reason ? field(needs.reason[0], needs.reason[1], reason, bi("可用键盘语音输入", "you can speak it")) : null,
      note ? field(needs.note[0], needs.note[1], note, bi("可用键盘语音输入", "you can speak it")) : null,
      picker ? h("div", {}, h("p", { class: "field-label" }, bi(needs.photos.zh || "照片", needs.photos.en || "Photos")), picker.el) : null,
      error,
      h("div", { class: "row" },
        button("取消", "Cancel", () => close(null), "ghost"),
        button("确认发送", "Send", () => {
          const problems = [];
          if (reason && !reason.value.trim()) problems.push(`请填写${needs.reason[0]} · ${needs.reason[1]} is needed`);
          if (note && !note.value.trim()) problems.push(`请填写${needs.note[0]} · ${needs.note[1]} is needed`);
          const photos = picker ? picker.photos() : [];
          if (picker && photos.length < (needs.photos.min || 0)) problems.push("请拍照 · a photo is needed");
          error.hidden = !problems.length;
          error.textContent = problems.join("\n");
          if (problems.length) return;
          close({ reason: reason ? reason.value.trim() : undefined, note: note ? note.value.trim() : undefined,
            photos, extension: extension || undefined });
        }, "primary")));
    for (const old of card.querySelectorAll(".answer")) old.remove();
    card.append(form);
    form.scrollIntoView({ block: "nearest" });
  });
}

// an action button on a card: asks what it needs (if anything), sends, says so
export function actionButton(card, c, action, needs, cls, after) {
  const [zh, en] = CASE_ACTION_WORDS[action];
  return button(zh, en, async () => {
    const values = needs ? await answerForm(card, [zh, en], needs) : {};
    if (!values) return;
    await sendCaseAction(c.case_id, action, values);
    toast(`已保存：${zh} · saved: ${en}`, "ok");
    if (after) after();
  }, cls);
}
