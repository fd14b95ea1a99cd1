// What waits to be sent (the outbox, oldest first, with the last error and the next try) and what
// the server refused (with its reason: the member sees it, and removes it once read).

import * as outbox from "../outbox.js";
import { timeWords } from "../ids.js";
import { bi, button, fill, h } from "../ui.js";
import { LEAF_WORDS, reasonWords } from "../words.js";

function what(item) {
  const [zh, en] = LEAF_WORDS[item.kind === "photo" ? "photo" : item.leaf] || [item.leaf, item.leaf];
  return bi(zh, en);
}

export async function render(root) {
  const body = h("div");
  root.append(h("h2", { class: "screen-title" }, bi("发送队列", "Waiting to send")), body);
  const load = async () => {
    const waiting = await outbox.items();
    const refused = await outbox.refusedItems();
    fill(body, 
      button("立即重试", "Try now", () => outbox.retryNow(), "primary wide"),
      h("section", { class: "group" }, h("h3", { class: "group-title" }, bi(`待发送（${waiting.length}）`, `waiting (${waiting.length})`)),
        ...(waiting.length ? waiting.map((item) => h("div", { class: "queue-item" }, what(item),
          h("span", { class: "muted", text: ` · ${timeWords(item.made_at)}` }),
          item.last_error ? h("p", { class: "muted small", text: `${reasonWords(item.last_error)} · ${item.attempts}×` }) : null))
          : [h("p", { class: "muted empty" }, bi("全部已发送", "everything is sent"))])),
      h("section", { class: "group" }, h("h3", { class: "group-title" }, bi(`被拒收（${refused.length}）`, `refused (${refused.length})`)),
        ...(refused.length ? refused.map((item) => h("div", { class: "queue-item refused" }, what(item),
          h("span", { class: "muted", text: ` · ${timeWords(item.made_at)}` }),
          h("p", { class: "error", text: reasonWords(item.reason, item.detail) }),
          item.body ? h("pre", { class: "small", text: JSON.stringify(item.body, null, 1).slice(0, 600) }) : null,
          button("已知悉，删除", "Seen: remove", async () => { await outbox.forgetRefused(item.n); load(); }, "small ghost")))
          : [h("p", { class: "muted empty" }, bi("没有被拒收的内容", "nothing refused"))])));
  };
  const off = outbox.onChange(() => { if (body.isConnected) load(); });
  await load();
  return { cleanup: off };
}
