// Ids and times made on the phone when the member acts: a message sent again after a lost answer
// carries the same id and time, so the server sees a duplicate, not a second report.

// an id of the wire format's rule (1–64 characters, none of whitespace and `/ + #`): a prefix, the
// time in base 36 and 8 random hex digits, unique per terminal without asking anyone
export function newId(prefix) {
  const random = new Uint32Array(1);
  crypto.getRandomValues(random);
  return `${prefix}-${Date.now().toString(36)}-${random[0].toString(16).padStart(8, "0")}`;
}

// ISO 8601 with the phone's offset (the wire format wants a time zone)
export function isoNow(date = new Date()) {
  const pad = (n, w = 2) => String(Math.abs(n)).padStart(w, "0");
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:` +
    `${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}` +
    `${sign}${pad(Math.trunc(offset / 60))}:${pad(offset % 60)}`;
}

// "3 分 05 秒" style countdown to an ISO time; negative when past
export function secondsUntil(iso, now = Date.now()) {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? Math.round((t - now) / 1000) : null;
}

export function countdownWords(seconds) {
  if (seconds === null) return ["无时限", "no time limit"];
  const past = seconds < 0;
  let s = Math.abs(seconds);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const en = d ? `${d}d ${h}h` : h ? `${h}h ${String(m).padStart(2, "0")}m` : `${m}:${String(s).padStart(2, "0")}`;
  const zh = d ? `${d}天${h}小时` : h ? `${h}小时${m}分` : `${m}分${String(s).padStart(2, "0")}秒`;
  return past ? [`已超期 ${zh}`, `overdue ${en}`] : [`剩余 ${zh}`, `${en} left`];
}

export function timeWords(iso) {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return "";
  return t.toLocaleString("zh-CN", { month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit" });
}
