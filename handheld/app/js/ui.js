// Building the screens: every text that comes from data goes in through textContent (or an
// attribute set by name), never as markup, so a hostile string stays a string; and in an element of
// its own direction (dir=auto: bidi-isolated), so a bidirectional override in it stops at its end.

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") {
      el.textContent = String(value);
      if (!("dir" in props)) el.dir = "auto";   // isolated: a stored RTL override cannot turn the text after it
    }
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// a phrase Chinese first, English second: <span lang=zh>…</span><span lang=en>…</span>
export function bi(zh, en, cls = "") {
  return h("span", { class: `bi ${cls}`.trim() },
    h("span", { class: "zh", lang: "zh-CN", text: zh }), h("span", { class: "en", lang: "en", text: en }));
}

export function button(zh, en, onclick, cls = "") {
  return h("button", { type: "button", class: `btn ${cls}`.trim(), onclick }, bi(zh, en));
}

// an icon of the sprite (icons/lucide.svg, made by tools/make_icons.py): a category key or a word
const SVG = "http://www.w3.org/2000/svg";
export const ICON_NAMES = new Set(["exposed_garbage", "dirty_road", "illegal_construction", "street_vending",
  "illegal_parking", "blocked_fire_lane", "fire_hazard", "safety_hazard", "water_leak", "neighbour_dispute", "noise",
  "stray_animal", "flyposting", "damaged_road", "manhole_cover", "street_light", "elevator", "public_facility", "other",
  "today", "report", "tasks", "verify", "more", "sos", "announcements", "diary", "registration", "camera", "clock",
  "building", "outbox", "signout", "online", "offline", "close", "send", "pin"]);
export function icon(name, cls = "") {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", `icon ${cls}`.trim());
  svg.setAttribute("aria-hidden", "true");
  const use = document.createElementNS(SVG, "use");
  use.setAttribute("href", `icons/lucide.svg#${ICON_NAMES.has(name) ? name : "other"}`);
  svg.append(use);
  return svg;
}

export function clear(el) { el.replaceChildren(); return el; }

// el's children become `children` (null, undefined and false are left out, as in h(): the DOM's own
// replaceChildren would write "null")
export function fill(el, ...children) { el.replaceChildren(); append(el, children); return el; }
export function add(el, ...children) { append(el, children); return el; }

// a short message at the top of the screen
let toastTimer = null;
export function toast(text, kind = "info") {
  const el = document.getElementById("toast");
  el.className = `toast show ${kind}`;
  el.textContent = text;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.className = "toast"; }, kind === "error" ? 7000 : 3500);
}

// "shown as of 10:42, offline" when a list is the service worker's last answer
export function staleNote(cachedAt) {
  if (!cachedAt) return null;
  const at = cachedAt.toLocaleTimeString("zh-CN", { hour: "2-digit", minute: "2-digit" });
  return h("p", { class: "stale" }, bi(`离线：显示 ${at} 的数据`, `offline: as of ${at}`));
}

export function field(zh, en, control, hint) {
  return h("label", { class: "field" }, h("span", { class: "field-label" }, bi(zh, en)), control,
    hint ? h("span", { class: "hint" }, hint) : null);
}

// a row of big choice buttons (one chosen): [{value, zh, en}], onchoose(value)
export function choices(options, chosen, onchoose, cls = "") {
  const row = h("div", { class: `choices ${cls}`.trim(), role: "radiogroup" });
  const draw = (value) => {
    for (const b of row.children) b.setAttribute("aria-checked", String(b.dataset.value === String(value)));
  };
  for (const o of options) {
    row.append(h("button", { type: "button", role: "radio", class: "choice", dataset: { value: String(o.value) },
      onclick: () => { draw(o.value); onchoose(o.value); } }, bi(o.zh, o.en)));
  }
  draw(chosen);
  return row;
}
