// 1 Today (今日): my grid drawn from GET /map, my position and today's walk, start / stop patrol,
// and today's coverage (GET /coverage).

import { read } from "../api.js";
import { drawMap, emptyMap } from "../map.js";
import * as position from "../position.js";
import * as session from "../session.js";
import { bi, button, fill, h, staleNote } from "../ui.js";

export async function render(root, ctx) {
  const me = ctx.me || {};
  const mapBox = h("div", { class: "map-box" });
  const coverage = h("div", { class: "figures" });
  const patrolBox = h("div", { class: "patrol" });
  root.append(
    h("h2", { class: "screen-title" }, bi("今日", "Today")),
    h("p", { class: "sub-title" }, h("span", { text: me.grid_name || me.grid_code || "" }),
      me.role_label ? h("span", { class: "muted", text: ` · ${me.role_label}` }) : null),
    patrolBox, mapBox, coverage);

  const map = await session.map();
  const drawn = map && map.grid ? drawMap(mapBox, map) : (emptyMap(mapBox), null);
  const show = (p) => { if (drawn && p) drawn.setPosition(p.coords.longitude, p.coords.latitude, p.coords.accuracy); };
  const showTrack = async () => { if (drawn) drawn.setTrack(await position.todayTrack()); };
  const off = position.onPosition(show);
  position.startWatching();
  show(position.latest());
  showTrack();

  const drawPatrol = () => {
    const on = position.onPatrol();
    fill(patrolBox, 
      on ? h("p", { class: "notice ok" }, bi("巡查中：每 10 秒发送一次位置（请保持本页打开）",
        "On patrol: your position is sent every 10 s (keep this page open)")) : null,
      button(on ? "结束巡查" : "开始巡查", on ? "Stop patrol" : "Start patrol", async () => {
        if (position.onPatrol()) await position.stopPatrol(); else await position.startPatrol();
        drawPatrol();
      }, on ? "danger wide" : "primary wide"));
  };
  drawPatrol();

  const loadCoverage = async () => {
    try {
      const { data, cachedAt } = await read("/coverage");
      const pct = (v) => (Number.isFinite(Number(v)) && v !== null ? `${Math.round(Number(v))}%` : "–");
      const walked = Number(data.walked_m);
      fill(coverage,
        h("div", { class: "figure" }, h("strong", { text: pct(data.covered_pct) }), bi("网格今日覆盖", "grid covered today")),
        h("div", { class: "figure" }, h("strong", { text: pct(data.my_covered_pct) }), bi("我走过的", "by me")),
        h("div", { class: "figure" }, h("strong", { text: Number.isFinite(walked) ? `${(walked / 1000).toFixed(1)} km` : "–" }),
          bi("今日步行", "walked today")),
        staleNote(cachedAt));
    } catch (e) {
      if (e.authLost) return;
      fill(coverage, h("p", { class: "muted" }, bi("覆盖率暂不可用", "coverage not available now")));
    }
  };
  loadCoverage();
  const timer = setInterval(() => { showTrack(); }, 10_000);
  return { cleanup: () => { clearInterval(timer); off(); } };
}
