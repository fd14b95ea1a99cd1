// 2 Report an incident (事件上报): category (icons, the member's recent ones first), urgency, 1–4
// photos, the place from the GPS (a tap on the map moves it), the nearest building named, and a
// description (the phone keyboard's voice input types into it). Saved to the outbox at once, with
// its report_id and time made now: it reaches the command center once, whenever there is signal.

import { kv } from "../db.js";
import { isoNow, newId } from "../ids.js";
import { drawMap, emptyMap, nearestBuilding } from "../map.js";
import * as outbox from "../outbox.js";
import { photoPicker } from "../picker.js";
import * as position from "../position.js";
import * as session from "../session.js";
import { bi, button, choices, field, fill, h, icon, toast } from "../ui.js";

const MAX_DESCRIPTION = 2000;


export async function sendIncident({ category, severity, lon, lat, address, description, photos }) {
  for (const photo of photos) await outbox.enqueuePhoto(photo);
  const body = { ts: isoNow(), report_id: newId("r"), category, severity, lat, lon };
  if (address) body.address = address.slice(0, 200);
  if (description) body.description = description;
  if (photos.length) body.photo_refs = photos.map((p) => p.ref);
  await outbox.enqueue("incident", body);
  return body;
}

export async function render(root, ctx) {
  const catalogue = await session.catalogue();
  const recent = (await kv.get("recent-categories")) || [];
  const categories = [...(catalogue.incident_categories || [])].sort((a, b) => {
    const ra = recent.indexOf(a.key), rb = recent.indexOf(b.key);
    return (ra < 0 ? 1e9 : ra) - (rb < 0 ? 1e9 : rb);
  });
  const severities = catalogue.severities || [];
  const form = { category: null, severity: null, lon: null, lat: null, building: null };
  let severityChosen = false;       // the member's own choice is kept; a category only presets it

  const severityRow = h("div");
  const drawSeverity = () => severityRow.replaceChildren(choices(
    severities.map((u) => ({ value: u.severity, zh: u.label_zh, en: u.label_en })), form.severity,
    (v) => { form.severity = Number(v); severityChosen = true; }, "severity"));
  const grid = h("div", { class: "category-grid", role: "radiogroup" });
  for (const c of categories) {
    grid.append(h("button", { type: "button", role: "radio", class: "category", "aria-checked": "false",
      dataset: { key: c.key }, onclick: () => {
        form.category = c.key;
        const preset = Number(c.severity ?? c.default_severity);
        if (!severityChosen && preset >= 1 && preset <= 4) { form.severity = preset; drawSeverity(); }
        for (const b of grid.children) b.setAttribute("aria-checked", String(b.dataset.key === c.key));
      } },
    icon(c.key, "category-icon"), bi(c.label_zh, c.label_en)));
  }
  drawSeverity();

  const picker = photoPicker({ max: 4 });
  const place = h("p", { class: "place" });
  const mapBox = h("div", { class: "map-box small" });
  const map = await session.map();
  const setPlace = (lon, lat, how) => {
    form.lon = lon; form.lat = lat;
    form.building = nearestBuilding(map, lon, lat);
    if (drawn) drawn.setPin(lon, lat);
    fill(place, bi(how === "gps" ? "位置来自 GPS" : "位置已在地图上选定", how === "gps" ? "place from GPS" : "place chosen on the map"),
      form.building ? h("span", { class: "building" }, icon("building"), h("span", { text: form.building.name }),
        h("span", { class: "muted", text: ` (${Math.round(form.building.distance_m)} m)` })) : null);
  };
  const drawn = map && map.grid ? drawMap(mapBox, map, { onTap: (lon, lat) => setPlace(lon, lat, "map") }) : (emptyMap(mapBox), null);
  fill(place, bi("正在定位…（也可点地图选位置）", "finding your position… (or tap the map)"));
  position.current().then((p) => {
    if (p && form.lon === null) setPlace(p.coords.longitude, p.coords.latitude, "gps");
    if (p && drawn) drawn.setPosition(p.coords.longitude, p.coords.latitude, p.coords.accuracy);
    if (!p && form.lon === null) fill(place, bi("无法定位：请点地图选择位置", "no GPS: tap the map to choose the place"));
  });

  const description = h("textarea", { name: "description", rows: 4, maxlength: String(MAX_DESCRIPTION) });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const submit = async () => {
    const problems = [];
    if (!form.category) problems.push("请选择事件类别 · choose a category");
    if (!form.severity) problems.push("请选择紧急程度 · choose the urgency");
    if (form.lon === null) problems.push("请选择位置 · choose the place (tap the map)");
    if (!picker.photos().length) problems.push("请至少拍一张照片 · take at least one photo");
    if (description.value.length > MAX_DESCRIPTION) problems.push("描述过长 · the description is too long");
    error.hidden = !problems.length;
    error.textContent = problems.join("\n");
    if (problems.length) { error.scrollIntoView({ block: "center" }); return; }
    await sendIncident({ category: form.category, severity: form.severity, lon: form.lon, lat: form.lat,
      address: form.building ? form.building.name : null, description: description.value.trim(), photos: picker.photos() });
    await kv.set("recent-categories", [form.category, ...recent.filter((k) => k !== form.category)].slice(0, 18));
    toast("已保存，有信号时自动发送 · Saved: it is sent when there is signal", "ok");
    picker.clear();
    ctx.go("today");
  };

  root.append(
    h("h2", { class: "screen-title" }, bi("事件上报", "Report an incident")),
    h("section", { class: "card" }, h("h3", {}, bi("类别", "Category")), grid),
    h("section", { class: "card" }, h("h3", {}, bi("紧急程度", "Urgency")), severityRow),
    h("section", { class: "card" }, h("h3", {}, bi("照片（1–4 张）", "Photos (1–4)")), picker.el),
    h("section", { class: "card" }, h("h3", {}, bi("位置", "Place")), mapBox, place,
      button("使用当前位置", "Use my position", async () => {
        const p = await position.current();
        if (p) setPlace(p.coords.longitude, p.coords.latitude, "gps");
        else toast("无法定位 · no position", "error");
      })),
    h("section", { class: "card" }, field("描述", "Description", description,
      bi("可使用键盘上的麦克风语音输入", "You can speak: use the microphone on your keyboard"))),
    error,
    button("提交上报", "Send report", submit, "primary wide"));
  return {};
}
