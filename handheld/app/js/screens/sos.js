// 5 SOS (紧急上报): a button held for 2 s (a ring fills; letting go earlier cancels) raises the
// member's SOS: a fix of where they are, then a status {state: online, sos: true}; afterwards an
// optional note and photo go as an incident. Below it, emergency verification (紧急核实): an alarm or
// a neighbour's SOS the command center asks this member to check (a notice of kind "check": the case,
// its place, the alarm's sensor_id/alarm_id or the member in SOS and their last position), answered
// confirmed / false alarm / need help with a note and photos on alarm/check, naming the case (and the
// alarm, when it is one: docs/HANDHELD_API.md).

import * as downlink from "../downlink.js";
import { isoNow, timeWords } from "../ids.js";
import * as outbox from "../outbox.js";
import { photoPicker } from "../picker.js";
import * as position from "../position.js";
import { sendIncident } from "./report.js";
import { bi, button, field, fill, h, icon, toast } from "../ui.js";
import { CHECK_OUTCOMES } from "../words.js";

export const HOLD_MS = 2000;
const SHOWN_ABOVE = new Set(["kind", "title", "place", "notice_id", "lat", "lon", "sos_lat", "sos_lon", "sos_at"]);
const FACT_WORDS = { sensor_id: ["设备", "sensor"], alarm_id: ["告警", "alarm"], case_id: ["案件", "case"],
  ts: ["时间", "time"], deadline: ["时限", "deadline"], urgency: ["紧急程度", "urgency"], category: ["类别", "category"],
  alarm_type: ["告警类型", "alarm type"], reason: ["说明", "note"], state: ["状态", "state"],
  sos_name: ["求助人", "member in SOS"], sos_terminal_id: ["求助终端", "their terminal"] };
const CHECK_PHOTOS = 4;   // as a report's (the server takes up to 4 photo_refs)
const SVG = "http://www.w3.org/2000/svg";

// an alarm-check request: a notice of kind "check" (or an item of its own kind, when the server
// names one so); what it carries is shown field by field, whatever it is
export function isCheckRequest(item) {
  const kind = item && item.body && item.body.kind;
  return item && (item.kind === "check" || item.kind === "alarm_check" || kind === "check" || kind === "alarm_check");
}

export async function raiseSos() {
  const p = await position.current(5000);
  if (p) await outbox.enqueue("fix", await position.fixOf(p));
  const status = { ts: isoNow(), state: "online", sos: true };
  const pct = await position.batteryPct();
  if (pct !== null) status.battery_pct = pct;
  await outbox.enqueue("status", status);
  return p;
}

function ring() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 120 120");
  svg.setAttribute("class", "sos-ring");
  svg.setAttribute("aria-hidden", "true");
  for (const cls of ["track", "fill"]) {
    const c = document.createElementNS(SVG, "circle");
    for (const [k, v] of Object.entries({ cx: 60, cy: 60, r: 54, class: cls, pathLength: 100 })) c.setAttribute(k, v);
    svg.append(c);
  }
  return svg;
}

function holdButton(onConfirmed) {
  const el = h("button", { type: "button", class: "sos-button", "aria-label": "按住 2 秒发出紧急求助 hold 2 s to send SOS" },
    ring(), h("span", { class: "sos-label" }, h("strong", { text: "SOS" }), bi("按住 2 秒", "hold 2 s")));
  let timer = null;
  const cancel = () => { clearTimeout(timer); timer = null; el.classList.remove("holding"); };
  const begin = (event) => {
    if (timer) return;
    if (event.pointerId !== undefined) el.setPointerCapture(event.pointerId);
    el.classList.add("holding");
    timer = setTimeout(() => { timer = null; el.classList.remove("holding"); onConfirmed(); }, HOLD_MS);
  };
  el.addEventListener("pointerdown", begin);
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) el.addEventListener(type, cancel);
  el.addEventListener("keydown", (e) => { if ((e.key === " " || e.key === "Enter") && !e.repeat) { e.preventDefault(); begin(e); } });
  el.addEventListener("keyup", (e) => { if (e.key === " " || e.key === "Enter") cancel(); });
  el.addEventListener("contextmenu", (e) => e.preventDefault());
  return el;
}

function afterSos(box, p) {
  const note = h("textarea", { rows: 3, maxlength: "2000" });
  const picker = photoPicker({ max: 4 });
  fill(box, 
    h("p", { class: "notice danger", role: "alert" }, bi("已发出紧急求助，指挥中心会联系您。", "SOS sent: the command center will contact you.")),
    h("p", { class: "muted" }, bi("如可以，补充说明或照片：", "If you can, add a note or a photo:")),
    field("说明", "note", note, bi("可用键盘语音输入", "you can speak it")), picker.el,
    button("发送补充", "Send the note", async () => {
      if (!note.value.trim() && !picker.photos().length) { toast("请填写说明或拍照 · add a note or a photo", "error"); return; }
      const where = p || (await position.current(5000));
      if (!where) { toast("无法定位，说明未发送 · no position: the note was not sent", "error"); return; }
      await sendIncident({ category: "safety_hazard", severity: 4, lon: where.coords.longitude, lat: where.coords.latitude,
        address: null, description: `SOS: ${note.value.trim()}`.slice(0, 2000), photos: picker.photos() });
      toast("补充已保存 · note saved", "ok");
      fill(box, h("p", { class: "notice danger" }, bi("已发出紧急求助", "SOS sent")));
    }, "primary wide"));
}

function where(lat, lon) {
  return typeof lat === "number" && typeof lon === "number" ? `${lat.toFixed(5)}, ${lon.toFixed(5)}` : null;
}

// what to check, in words: every plain field of the request, and the SOS member's last position
function checkFacts(body) {
  const facts = h("dl", { class: "facts" });
  const add = (words, text) => facts.append(h("dt", {}, bi(words[0], words[1])), h("dd", { text }));
  for (const [key, value] of Object.entries(body)) {
    if (value === null || typeof value === "object" || SHOWN_ABOVE.has(key)) continue;
    const shown = key === "ts" || key === "deadline" ? timeWords(value) : String(value);
    if (FACT_WORDS[key]) add(FACT_WORDS[key], shown);
    else facts.append(h("dt", { text: key }), h("dd", { text: shown }));
  }
  const sosAt = where(body.sos_lat, body.sos_lon);
  if (sosAt) add(["求助人最后位置", "their last position"], body.sos_at ? `${sosAt} (${timeWords(body.sos_at)})` : sosAt);
  const place = where(body.lat, body.lon);
  if (place) add(["案件位置", "the case's place"], place);
  return facts;
}

// the answer to a check request: the case it names, and the alarm when it is one (what the server
// links the answer by); null when the request names neither
export function checkAnswer(body, outcome, note, photoRefs, ts) {
  const answer = { ts, outcome };
  if (typeof body.case_id === "string") answer.case_id = body.case_id;
  if (typeof body.sensor_id === "string" && typeof body.alarm_id === "string") {
    answer.sensor_id = body.sensor_id;
    answer.alarm_id = body.alarm_id;
  }
  if (!answer.case_id && !answer.sensor_id) return null;
  if (note) answer.note = note.slice(0, 500);
  if (photoRefs.length) answer.photo_refs = photoRefs.slice(0, CHECK_PHOTOS);
  return answer;
}

function checkCard(item, after) {
  const body = item.body && typeof item.body === "object" ? item.body : {};
  const card = h("article", { class: "case-card urgent" },
    h("header", {}, icon("sos", "case-icon"), h("div", { class: "case-head" },
      h("h3", { text: String(body.title ?? body.alarm_type ?? "紧急核实 Check on site") }),
      body.place ? h("p", { class: "place", text: String(body.place) }) : null)),
    checkFacts(body));
  if (!checkAnswer(body, "confirmed", "", [], "")) {
    card.append(h("p", { class: "muted" }, bi("此请求缺少案件或告警编号，请电话联系指挥中心。",
      "This request names no case and no alarm: call the command center.")));
    return card;
  }
  const note = h("textarea", { rows: 2, maxlength: "500" });
  const picker = photoPicker({ max: CHECK_PHOTOS });
  card.append(field("说明", "note", note), picker.el, h("div", { class: "row actions" }, ...CHECK_OUTCOMES.map((o) =>
    button(o.zh, o.en, async () => {
      const photos = picker.photos();
      for (const photo of photos) await outbox.enqueuePhoto(photo);
      const answer = checkAnswer(body, o.outcome, note.value.trim(), photos.map((p) => p.ref), isoNow());
      await outbox.enqueue("alarm/check", answer);
      await downlink.markDone(item.key);
      toast(`已保存：${o.zh} · saved: ${o.en}`, "ok");
      after();
    }, o.outcome === "need_help" ? "danger" : o.outcome === "confirmed" ? "primary" : "ghost"))));
  return card;
}

export async function render(root) {
  const after = h("div", { class: "sos-after" });
  const checks = h("div");
  root.append(
    h("h2", { class: "screen-title" }, bi("紧急上报", "Emergency (SOS)")),
    h("p", { class: "muted center" }, bi("遇到危险时按住按钮 2 秒。", "In danger, hold the button for 2 seconds.")),
    h("div", { class: "sos-box" }, holdButton(async () => {
      if (navigator.vibrate) navigator.vibrate(200);
      const p = await raiseSos();
      afterSos(after, p);
    })),
    after,
    h("h2", { class: "screen-title" }, bi("紧急核实", "Emergency verification")),
    checks);
  const load = async () => {
    const items = await downlink.inbox((i) => isCheckRequest(i) && !i.done);
    fill(checks, ...(items.length ? items.map((i) => checkCard(i, load))
      : [h("p", { class: "muted empty" }, bi("没有待核实的告警或求助", "nothing to check"))]));
  };
  await load();
  return { refresh: (item) => { if (isCheckRequest(item)) load(); } };
}
