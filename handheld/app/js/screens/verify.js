// 4 Verify (事件核查): my grid's cases waiting for verification that I did not handle — pass with a
// photo taken on the spot, or fail with what is still wrong.

import { read } from "../api.js";
import { actionButton, caseCard, sentActions, ticker } from "../cases.js";
import * as downlink from "../downlink.js";
import { bi, fill, h, staleNote } from "../ui.js";

export async function render(root) {
  const list = h("div");
  root.append(h("h2", { class: "screen-title" }, bi("事件核查", "Verify")), list);
  let stopTicker = () => {};
  const load = async () => {
    stopTicker();
    let answer;
    try {
      answer = await read("/verify");
    } catch (e) {
      if (e.authLost) return;
      fill(list, h("p", { class: "error" }, bi("核查列表暂不可用（离线且无缓存）", "Nothing to show (offline, nothing kept)")));
      return;
    }
    const { data, cachedAt } = answer;
    const cases = Array.isArray(data) ? data : Array.isArray(data.cases) ? data.cases : [];
    const sent = await sentActions();
    for (const n of await downlink.inbox((i) => i.kind === "notice" && i.body && i.body.kind === "verify" && !i.done)) {
      await downlink.markDone(n.key);
    }
    fill(list, staleNote(cachedAt),
      h("p", { class: "muted" }, bi("到现场查看后拍照确认。", "Go and look, then answer with a photo.")),
      ...(cases.length ? cases.map((c) => {
        const card = caseCard(c, { sent: sent[c.case_id] });
        card.append(h("div", { class: "row actions" },
          actionButton(card, c, "verify_pass", { photos: { min: 1, max: 4, zh: "现场照片", en: "a photo of the place" } }, "primary", load),
          actionButton(card, c, "verify_fail", { reason: ["仍存在的问题", "what is still wrong"],
            photos: { min: 0, max: 4, zh: "现场照片（可选）", en: "photos (optional)" } }, "danger", load)));
        return card;
      }) : [h("p", { class: "muted empty" }, bi("没有待核查的案件", "nothing waits for verification"))]));
    stopTicker = ticker(list);
  };
  await load();
  return {
    cleanup: () => stopTicker(),
    refresh: (item) => { if (item.kind === "notice" && item.body && item.body.kind === "verify") load(); },
  };
}
