// People's-feelings diary (民情日记): what the member heard from residents, by category, 1–500
// characters; the phone keeps its own recent entries to show.

import { kv } from "../db.js";
import { isoNow, newId, timeWords } from "../ids.js";
import * as outbox from "../outbox.js";
import * as session from "../session.js";
import { bi, button, choices, field, h, toast } from "../ui.js";

const MAX_TEXT = 500;

export async function render(root) {
  const catalogue = await session.catalogue();
  const categories = catalogue.diary_categories || [];
  let category = null;
  const text = h("textarea", { rows: 6, maxlength: String(MAX_TEXT) });
  const counter = h("span", { class: "muted", text: `0 / ${MAX_TEXT}` });
  text.addEventListener("input", () => { counter.textContent = `${text.value.length} / ${MAX_TEXT}`; });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const recent = h("div");
  const drawRecent = async () => {
    const entries = (await kv.get("diary")) || [];
    const label = (key) => categories.find((c) => c.key === key) || { label_zh: key, label_en: key };
    recent.replaceChildren(...entries.slice(0, 10).map((e) => h("article", { class: "diary-entry" },
      h("p", { class: "muted" }, bi(label(e.category).label_zh, label(e.category).label_en), " · ", h("span", { text: timeWords(e.ts) })),
      h("p", { text: e.text }))));
  };
  root.append(
    h("h2", { class: "screen-title" }, bi("民情日记", "People's diary")),
    h("section", { class: "card" },
      h("h3", {}, bi("类别", "Category")),
      choices(categories.map((c) => ({ value: c.key, zh: c.label_zh, en: c.label_en })), null, (v) => { category = v; }, "wrap"),
      field("内容", "what you heard", text, h("span", {}, bi("可用键盘语音输入", "you can speak it"), " ", counter)),
      error,
      button("保存", "Save", async () => {
        const value = text.value.trim();
        const problems = [];
        if (!category) problems.push("请选择类别 · choose a category");
        if (!value) problems.push("请填写内容 · write what you heard");
        if (value.length > MAX_TEXT) problems.push(`最多 ${MAX_TEXT} 字 · at most ${MAX_TEXT} characters`);
        error.hidden = !problems.length;
        error.textContent = problems.join("\n");
        if (problems.length) return;
        const entry = { ts: isoNow(), entry_id: newId("d"), category, text: value };
        await outbox.enqueue("diary", entry);
        await kv.set("diary", [entry, ...((await kv.get("diary")) || [])].slice(0, 50));
        text.value = "";
        counter.textContent = `0 / ${MAX_TEXT}`;
        toast("日记已保存 · diary entry saved", "ok");
        drawRecent();
      }, "primary wide")),
    h("h3", { class: "group-title" }, bi("最近记录", "Recent entries")), recent);
  drawRecent();
  return {};
}
