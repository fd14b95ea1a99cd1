// Investigation and registration (采集登记): the basic-data forms a member fills in on site — new
// resident, moved out, house use changed, new shop, part damaged — and "my registrations" with their
// review state (待审核 / 已通过 / 已退回 and why). A form is saved to the outbox at once, with its own
// id (a UUID) and time made now, so one filled in a basement is sent later, exactly once
// (POST /ledger/submissions: docs/HANDHELD_API.md, "Registrations"). Nothing changes the ledger
// until the community reviews it. The choices (buildings, houses, residents, parts) are the
// server's reads, kept by the service worker for offline; the words (genders, tags, uses …) are the
// server's too (GET /ledger/words): the app spells only which form is which.

import { read } from "./api.js";
import { isoNow, timeWords } from "./ids.js";
import * as outbox from "./outbox.js";
import { photoPicker } from "./picker.js";
import * as session from "./session.js";
import { sendIncident } from "./screens/report.js";
import { add, bi, button, choices, field, fill, h, staleNote, toast } from "./ui.js";

export const LEAF = "ledger/submissions";
const NAME_MAX = 30;
const NOTE_MAX = 500;
const remembered = new Map();    // reads of this visit: a form still works when the network goes mid-visit

// the forms, by the server's submission kind (SubmissionKind): what each asks for
const FORMS = {
  new_resident: { zh: "新增人口", en: "New resident", build: newResident },
  moved_out: { zh: "人口迁出", en: "Moved out", build: movedOut },
  household_changed: { zh: "户信息变更", en: "Household changed", build: householdChanged },
  house_use_changed: { zh: "房屋用途变更", en: "House use changed", build: houseUse },
  new_shop: { zh: "新增门店", en: "New shop", build: newShop },
  thing_damaged: { zh: "部件损坏", en: "Part damaged", build: partDamaged },
};

// a read of the ledger (network first; the service worker's last answer offline; else this visit's).
// A busy server (429, 5xx: e.g. too many connections from one address) is asked again, a few times.
async function ledgerRead(path, attempts = 3) {
  try {
    const answer = await read(`/ledger/${path}`);
    remembered.set(path, answer);
    return answer;
  } catch (e) {
    if (e.authLost) throw e;
    if (e.retryable && e.status !== 0 && attempts > 1) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(e.retryAfter || 1, 5) * 1000));
      return ledgerRead(path, attempts - 1);
    }
    if (!remembered.has(path)) throw e;
    return { ...remembered.get(path), cachedAt: new Date() };
  }
}

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const x = Array.from(b, (v) => v.toString(16).padStart(2, "0")).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

// GB 11643: 17 digits, a check character, the birth date inside; the server checks again
const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
export function idNumberProblem(text, birthDate) {
  if (!/^\d{17}[\dX]$/.test(text)) return "身份证号为 17 位数字加校验位 · 17 digits and a check digit or X";
  if (birthDate && text.slice(6, 14) !== birthDate.replaceAll("-", "")) return "身份证号与出生日期不符 · not the birth date given";
  const sum = WEIGHTS.reduce((s, w, i) => s + w * Number(text[i]), 0);
  if ("10X98765432"[sum % 11] !== text[17]) return "身份证号校验位错误 · the check digit is wrong";
  return null;
}

// a registration into the outbox: sent when there is signal, once (its id is its own)
async function save(ctx, words, kind, targetId, fields, photoRefs = []) {
  const body = { id: uuid(), ts: isoNow(), kind, target_kind: words.targets[kind], target_id: String(targetId),
    fields, photo_refs: photoRefs };
  await outbox.enqueue(LEAF, body);
  toast("已保存，有信号时自动发送，经社区审核后生效 · Saved: sent when there is signal, reviewed by the community", "ok");
  ctx.go("registration");
  return body;
}

// --- the pieces every form is made of ---------------------------------------------------------------
const options = (list) => list.map((w) => ({ value: w.value, zh: w.label_zh, en: w.label_en }));

function select(name, items, placeholder) {
  return h("select", { name }, h("option", { value: "", text: placeholder }),
    ...items.map(([value, text]) => h("option", { value: String(value), text })));
}

function input(name, type = "text", extra = {}) {
  return h("input", { name, type, class: "reg-input", autocomplete: "off", ...extra });
}

// building → house (→ its households and residents): calls onHouse(house) / onBuilding(building)
async function placePicker({ onBuilding, onHouse }) {
  const { data, cachedAt } = await ledgerRead("buildings");
  const houseBox = h("div");
  const buildings = select("building", data.buildings.map((b) => [b.building_id, b.name]), "选择楼栋 · choose a building");
  buildings.addEventListener("change", async () => {
    fill(houseBox);
    if (onHouse) onHouse(null);
    const chosen = data.buildings.find((b) => b.building_id === buildings.value) || null;
    if (onBuilding) onBuilding(chosen);
    if (!chosen || !onHouse) return;
    let panel;
    try {
      panel = (await ledgerRead(`buildings/${encodeURIComponent(chosen.building_id)}`)).data;
    } catch (e) {
      fill(houseBox, h("p", { class: "error", text: "无法读取该楼栋（离线且未曾打开） · not available offline yet" }));
      return;
    }
    const houses = select("house", panel.houses.map((x) => [x.house_id,
      `${x.entrance}单元 ${x.floor}层 ${x.number} · ${x.use_label}`]), "选择房屋 · choose a house");
    houses.addEventListener("change", () => onHouse(panel.houses.find((x) => String(x.house_id) === houses.value) || null));
    fill(houseBox, field("房屋", "House", houses));
  });
  return h("div", {}, staleNote(cachedAt), field("楼栋", "Building", buildings), houseBox);
}

function problemsBox() { return h("p", { class: "error", role: "alert", hidden: true }); }
function showProblems(box, problems) {
  box.hidden = !problems.length;
  box.textContent = problems.join("\n");
  if (problems.length) box.scrollIntoView({ block: "center" });
  return !problems.length;
}

function nameProblem(value, zh, en) {
  if (!value) return `请填写${zh} · ${en} is required`;
  return value.length > NAME_MAX ? `${zh}最多 ${NAME_MAX} 字 · ${en}: at most ${NAME_MAX} characters` : null;
}

// --- the forms ----------------------------------------------------------------------------------------
async function newResident(root, ctx, words) {
  const form = { house: null, household: null, gender: null, registration: null, tags: new Set() };
  const householdBox = h("div");
  const drawHouseholds = () => {
    if (!form.house) { fill(householdBox); return; }
    const list = form.house.households.map((o) => ({ value: String(o.household_id), zh: `户 ${o.household_id}`,
      en: o.residents.map((r) => r.name).join("、") || "—" }));
    fill(householdBox, field("户", "Household", choices([...list, { value: "new", zh: "新立户", en: "new household" }],
      null, (v) => { form.household = v; }, "wrap reg-households")));
  };
  const picker = await placePicker({ onHouse: (house) => { form.house = house; form.household = null; drawHouseholds(); } });
  const [name, birth, idNumber, phone, movedIn] = [input("name", "text", { maxlength: String(NAME_MAX) }),
    input("birth_date", "date"), input("id_number", "text", { inputmode: "text", maxlength: "18" }),
    input("phone", "tel"), input("moved_in", "date")];
  const relation = select("relation", words.relations.map((w) => [w.value, `${w.label_zh} ${w.label_en}`]),
    "与户主关系 · relation to the head");
  const tagRow = h("div", { class: "choices wrap reg-tags" }, ...words.care_tags.map((t) => h("button", {
    type: "button", class: "choice", role: "checkbox", "aria-checked": "false", dataset: { value: t.value },
    onclick: (e) => {
      const on = !form.tags.has(t.value);
      if (on) form.tags.add(t.value); else form.tags.delete(t.value);
      e.currentTarget.setAttribute("aria-checked", String(on));
    } }, bi(t.label_zh, t.label_en))));
  const problems = problemsBox();
  const submit = async () => {
    const id = idNumber.value.replace(/\s/g, "").toUpperCase();
    const checked = (words.registrations.find((r) => r.value === form.registration) || {}).id_checked;
    const list = [!form.house && "请选择房屋 · choose a house", !form.household && "请选择户 · choose the household",
      nameProblem(name.value.trim(), "姓名", "the name"), !form.gender && "请选择性别 · choose the gender",
      !birth.value && "请填写出生日期 · the birth date is required",
      !form.registration && "请选择户籍类型 · choose the registration", !relation.value && "请选择与户主关系 · choose the relation",
      id && checked && idNumberProblem(id, birth.value),
      phone.value && !/^\+?[\d\s-]{5,24}$/.test(phone.value.trim()) && "电话号码格式不对 · the phone is not a number"];
    if (!showProblems(problems, list.filter(Boolean))) return;
    const fields = { name: name.value.trim(), gender: form.gender, birth_date: birth.value,
      registration: form.registration, relation: relation.value, tags: [...form.tags] };
    if (form.household !== "new") fields.household_id = Number(form.household);
    if (id) fields.id_number = id;
    if (phone.value.trim()) fields.phone = phone.value.trim();
    if (movedIn.value) fields.moved_in = movedIn.value;
    await save(ctx, words, "new_resident", form.house.house_id, fields);
  };
  root.append(h("section", { class: "card" }, picker, householdBox),
    h("section", { class: "card" },
      field("姓名", "Name", name),
      field("性别", "Gender", choices(options(words.genders), null, (v) => { form.gender = v; }, "reg-gender")),
      field("出生日期", "Birth date", birth),
      field("身份证号", "ID number", idNumber, bi("仅加密保存，屏幕上只显示部分", "kept encrypted; screens show it masked")),
      field("联系电话", "Phone", phone),
      field("户籍类型", "Registration", choices(options(words.registrations), null, (v) => { form.registration = v; },
        "wrap reg-registration")),
      field("与户主关系", "Relation", relation),
      field("迁入日期", "Moved in", movedIn),
      field("关爱标签", "Care tags", tagRow)),
    problems, button("保存登记", "Save registration", submit, "primary wide reg-save"));
}

async function movedOut(root, ctx, words) {
  const form = { resident: null };
  const residentBox = h("div");
  const picker = await placePicker({ onHouse: (house) => {
    const people = house ? house.households.flatMap((o) => o.residents) : [];
    const list = select("resident", people.map((r) => [r.resident_id, `${r.name} · ${r.relation_label}`]), "选择居民 · choose the resident");
    list.addEventListener("change", () => { form.resident = list.value || null; });
    form.resident = null;
    fill(residentBox, house ? field("居民", "Resident", list) : null);
  } });
  const date = input("moved_out", "date");
  const problems = problemsBox();
  root.append(h("section", { class: "card" }, picker, residentBox, field("迁出日期", "Moved out on", date)), problems,
    button("保存登记", "Save registration", async () => {
      if (!showProblems(problems, [!form.resident && "请选择居民 · choose the resident",
        !date.value && "请填写迁出日期 · the date is required"].filter(Boolean))) return;
      await save(ctx, words, "moved_out", form.resident, { moved_out: date.value });
    }, "primary wide reg-save"));
}

// a household's new head (户主变更): the house, the household, which of its residents heads it now
async function householdChanged(root, ctx, words) {
  const form = { household: null, head: null };
  const box = h("div");
  const drawHeads = () => {
    const people = form.household ? form.household.residents : [];
    const heads = select("head", people.map((r) => [r.resident_id, `${r.name} · ${r.relation_label}`]), "选择新户主 · choose the new head");
    heads.addEventListener("change", () => { form.head = heads.value || null; });
    return field("新户主", "New head", heads);
  };
  const picker = await placePicker({ onHouse: (house) => {
    form.household = null; form.head = null;
    if (!house) { fill(box); return; }
    const heads = h("div");
    fill(box, field("户", "Household", choices(house.households.map((o) => ({ value: String(o.household_id),
      zh: `户 ${o.household_id}`, en: o.residents.map((r) => r.name).join("、") || "—" })), null, (v) => {
      form.household = house.households.find((o) => String(o.household_id) === v) || null;
      form.head = null;
      fill(heads, drawHeads());
    }, "wrap reg-households")), heads);
  } });
  const problems = problemsBox();
  root.append(h("section", { class: "card" }, picker, box), problems,
    button("保存登记", "Save registration", async () => {
      if (!showProblems(problems, [!form.household && "请选择户 · choose the household",
        !form.head && "请选择新户主 · choose the new head"].filter(Boolean))) return;
      await save(ctx, words, "household_changed", form.household.household_id, { head_id: Number(form.head) });
    }, "primary wide reg-save"));
}

async function houseUse(root, ctx, words) {
  const form = { house: null, use: null };
  const picker = await placePicker({ onHouse: (house) => { form.house = house; } });
  const area = input("area_m2", "number", { min: "1", step: "0.1", inputmode: "decimal" });
  const problems = problemsBox();
  root.append(h("section", { class: "card" }, picker,
    field("现在的用途", "Use now", choices(options(words.house_uses), null, (v) => { form.use = v; }, "wrap reg-use")),
    field("面积（平方米，可选）", "Area m² (optional)", area)), problems,
  button("保存登记", "Save registration", async () => {
    if (!showProblems(problems, [!form.house && "请选择房屋 · choose a house", !form.use && "请选择用途 · choose the use",
      area.value && !(Number(area.value) > 0) && "面积须大于 0 · the area must be above 0"].filter(Boolean))) return;
    const fields = { use: form.use };
    if (area.value) fields.area_m2 = Number(area.value);
    await save(ctx, words, "house_use_changed", form.house.house_id, fields);
  }, "primary wide reg-save"));
}

async function newShop(root, ctx, words) {
  const form = { building: null, fireKey: false };
  const picker = await placePicker({ onBuilding: (b) => { form.building = b; } });
  const [name, kind, licence, contact, phone] = [input("shop_name", "text", { maxlength: String(NAME_MAX) }),
    input("shop_kind", "text", { maxlength: String(NAME_MAX) }), input("licence"), input("contact_name"), input("contact_phone", "tel")];
  const problems = problemsBox();
  root.append(h("section", { class: "card" }, picker, field("店名", "Name", name), field("类型（如 餐饮、便利店）", "Kind", kind),
    field("统一社会信用代码（可选）", "Licence (optional)", licence), field("联系人（可选）", "Contact (optional)", contact),
    field("联系电话（可选）", "Contact phone (optional)", phone),
    field("消防重点单位", "Fire-safety key unit", choices([{ value: "no", zh: "否", en: "no" }, { value: "yes", zh: "是", en: "yes" }],
      "no", (v) => { form.fireKey = v === "yes"; }))), problems,
  button("保存登记", "Save registration", async () => {
    if (!showProblems(problems, [!form.building && "请选择楼栋 · choose the building",
      nameProblem(name.value.trim(), "店名", "the name"), nameProblem(kind.value.trim(), "类型", "the kind"),
      contact.value.trim().length > NAME_MAX && `联系人最多 ${NAME_MAX} 字 · contact: at most ${NAME_MAX}`].filter(Boolean))) return;
    const fields = { name: name.value.trim(), kind: kind.value.trim(), fire_key_unit: form.fireKey };
    if (licence.value.trim()) fields.licence = licence.value.trim();
    if (contact.value.trim()) fields.contact_name = contact.value.trim();
    if (phone.value.trim()) fields.contact_phone = phone.value.trim();
    await save(ctx, words, "new_shop", form.building.building_id, fields);
  }, "primary wide reg-save"));
}

// a damaged part: the ledger's registration and, as the report flow does, an incident of the
// part's case category at the part's place with the same photos
async function partDamaged(root, ctx, words) {
  const { data, cachedAt } = await ledgerRead("things");
  const catalogue = await session.catalogue();
  const form = { part: null, state: null };
  const parts = select("thing", data.things.map((t) => [t.thing_id, `${t.kind_label} ${t.thing_id} · ${t.state_label}`]),
    "选择部件 · choose the part");
  parts.addEventListener("change", () => { form.part = data.things.find((t) => t.thing_id === parts.value) || null; });
  const note = h("textarea", { name: "note", rows: 3, maxlength: String(NOTE_MAX) });
  const picker = photoPicker({ max: 4 });
  const problems = problemsBox();
  root.append(h("section", { class: "card" }, staleNote(cachedAt), field("部件", "Part", parts),
    field("现状", "State", choices(options(words.damaged_states), null, (v) => { form.state = v; }, "wrap reg-state")),
    field("说明", "Note", note)), h("section", { class: "card" }, h("h3", {}, bi("照片（1–4 张）", "Photos (1–4)")), picker.el),
  problems, button("保存并上报", "Save and report", async () => {
    if (!showProblems(problems, [!form.part && "请选择部件 · choose the part", !form.state && "请选择现状 · choose the state",
      !picker.photos().length && "请至少拍一张照片 · take at least one photo"].filter(Boolean))) return;
    const photos = picker.photos();
    const category = (catalogue.incident_categories || []).find((c) => c.key === form.part.category);
    await sendIncident({ category: form.part.category, severity: Number(category ? category.severity : 2) || 2,
      lon: form.part.lon, lat: form.part.lat, address: `${form.part.kind_label} ${form.part.thing_id}`,
      description: note.value.trim() || `${form.part.kind_label} ${form.part.thing_id}`, photos });
    const fields = { state: form.state };
    if (note.value.trim()) fields.note = note.value.trim();
    await save(ctx, words, "thing_damaged", form.part.thing_id, fields, photos.map((p) => p.ref));
    picker.clear();
  }, "primary wide reg-save"));
}

// --- the menu and my registrations -------------------------------------------------------------------
async function mine(box) {
  const waiting = (await outbox.items()).filter((i) => i.leaf === LEAF);
  const refused = (await outbox.refusedItems()).filter((i) => i.leaf === LEAF);
  let listed = [], cachedAt = null, failed = null;
  try { ({ data: { submissions: listed }, cachedAt } = await ledgerRead("submissions")); } catch (e) { failed = e; }
  const label = (kind) => FORMS[kind] ? bi(FORMS[kind].zh, FORMS[kind].en) : h("span", { text: kind });
  const row = (kind, name, stateWords, when, cls, reason) => h("div", { class: `queue-item reg-item ${cls}` },
    label(kind), name ? h("span", { class: "reg-name", text: ` ${name}` }) : null,
    h("span", { class: "reg-state", text: ` · ${stateWords}` }), h("span", { class: "muted small", text: ` · ${timeWords(when)}` }),
    reason ? h("p", { class: "error reg-reason", text: reason }) : null);
  fill(box, staleNote(cachedAt),
    ...waiting.map((i) => row(i.body.kind, i.body.fields.name, "待发送 waiting to send", i.body.ts, "waiting")),
    ...refused.map((i) => row(i.body.kind, i.body.fields.name, "被拒收 refused", i.body.ts, "refused", i.detail || i.reason)),
    ...listed.map((s) => row(s.kind, s.name, s.state_label, s.submitted_at, `state-${s.state}`, s.reason)),
    failed && !listed.length ? h("p", { class: "muted", text: "离线：稍后显示审核状态 · offline: review states later" }) : null,
    !waiting.length && !refused.length && !listed.length && !failed ? h("p", { class: "muted empty" },
      bi("还没有登记", "no registrations yet")) : null);
}

async function menu(root) {
  const list = h("div", { class: "reg-mine" });
  root.append(h("nav", { class: "menu reg-menu" }, ...Object.entries(FORMS).map(([kind, f]) =>
    h("a", { class: "menu-entry", href: `#registration/${kind}`, dataset: { kind } }, bi(f.zh, f.en)))),
  h("h3", { class: "group-title" }, bi("我的登记", "My registrations")), list);
  await mine(list);
  const off = outbox.onChange(() => { if (list.isConnected) mine(list).catch(console.error); });
  return { cleanup: off };
}

export async function render(root, ctx) {
  const kind = location.hash.replace(/^#registration\/?/, "").split(/[/?]/, 1)[0];
  const form = FORMS[kind];
  add(root, h("h2", { class: "screen-title" }, bi(form ? form.zh : "采集登记", form ? form.en : "Registration")),
    form ? h("a", { class: "btn ghost small reg-back", href: "#registration" }, bi("返回", "Back")) : null);
  if (!form) return menu(root);
  const { data: words } = await ledgerRead("words");
  await form.build(root, ctx, words);
  return {};
}
