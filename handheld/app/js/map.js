// The member's grid drawn as SVG from GET /map (the grid's outline and its buildings): no tile
// server, so it works in a basement from the last answer. Coordinates are projected to metres
// around the grid (equirectangular: a grid is a few hundred metres across), north up.

const SVG = "http://www.w3.org/2000/svg";
const M_PER_DEG_LAT = 110_540;
const M_PER_DEG_LON_EQUATOR = 111_320;

function s(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function rings(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return geometry.coordinates;
  if (geometry.type === "MultiPolygon") return geometry.coordinates.flat();
  return [];
}

function allPoints(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Point") return [geometry.coordinates];
  return rings(geometry).flat();
}

// a feature's representative point [lon, lat]: a point, or its outer ring's mean vertex
export function anchor(geometry) {
  if (!geometry) return null;
  if (geometry.type === "Point") return geometry.coordinates;
  const ring = rings(geometry)[0];
  if (!ring || !ring.length) return null;
  const sum = ring.reduce(([x, y], [lon, lat]) => [x + lon, y + lat], [0, 0]);
  return [sum[0] / ring.length, sum[1] / ring.length];
}

export function projection(map) {
  let s0, w0, n0, e0;
  if (Array.isArray(map.bounds) && map.bounds.length === 2) {
    [[s0, w0], [n0, e0]] = map.bounds;
  } else {
    const points = allPoints(map.grid && map.grid.geometry);
    const lons = points.map((p) => p[0]), lats = points.map((p) => p[1]);
    [s0, w0, n0, e0] = [Math.min(...lats), Math.min(...lons), Math.max(...lats), Math.max(...lons)];
  }
  const kx = M_PER_DEG_LON_EQUATOR * Math.cos(((s0 + n0) / 2) * Math.PI / 180);
  return {
    width: Math.max(1, (e0 - w0) * kx), height: Math.max(1, (n0 - s0) * M_PER_DEG_LAT),
    xy: (lon, lat) => [(lon - w0) * kx, (n0 - lat) * M_PER_DEG_LAT],
    lonlat: (x, y) => [w0 + x / kx, n0 - y / M_PER_DEG_LAT],
    metres: (a, b) => Math.hypot((a[0] - b[0]) * kx, (a[1] - b[1]) * M_PER_DEG_LAT),
  };
}

function pathOf(geometry, p) {
  return rings(geometry).map((ring) =>
    ring.map(([lon, lat], i) => `${i ? "L" : "M"}${p.xy(lon, lat).map((v) => v.toFixed(1)).join(" ")}`).join("") + "Z",
  ).join("");
}

// the nearest building to [lon, lat]: {id, name, distance_m} or null
export function nearestBuilding(map, lon, lat) {
  const features = (map && map.buildings && map.buildings.features) || [];
  if (!features.length) return null;
  const p = projection(map);
  let best = null;
  for (const f of features) {
    const a = anchor(f.geometry);
    if (!a) continue;
    const d = p.metres(a, [lon, lat]);
    if (!best || d < best.distance_m) {
      const props = f.properties || {};
      best = { id: props.id ?? f.id ?? null, name: String(props.name ?? props.id ?? ""), distance_m: d };
    }
  }
  return best;
}

// draws the map into `container`; returns {setPosition, setPin, setTrack}. `onTap(lon, lat)` makes
// the map choose a place (the report screen).
export function drawMap(container, map, { onTap, label = "我的网格 My grid" } = {}) {
  const p = projection(map);
  const pad = Math.max(p.width, p.height) * 0.06;
  const unit = Math.max(p.width, p.height) / 100;      // 1 % of the map: sizes that read at any zoom
  const svg = s("svg", { viewBox: `${-pad} ${-pad} ${p.width + 2 * pad} ${p.height + 2 * pad}`, class: "map",
    role: "img", "aria-label": label, preserveAspectRatio: "xMidYMid meet" });
  svg.append(s("rect", { x: -pad, y: -pad, width: p.width + 2 * pad, height: p.height + 2 * pad, class: "map-bg" }));
  if (map.grid && map.grid.geometry) svg.append(s("path", { d: pathOf(map.grid.geometry, p), class: "map-grid" }));
  const track = s("polyline", { class: "map-track", points: "", "stroke-width": unit * 0.8 });
  svg.append(track);
  const features = (map.buildings && map.buildings.features) || [];
  const labels = features.length <= 40;
  for (const f of features) {
    const g = f.geometry;
    if (!g) continue;
    const name = String((f.properties && (f.properties.name ?? f.properties.id)) ?? "");
    const group = s("g", { class: "map-building" });
    if (g.type === "Point") {
      const [x, y] = p.xy(...g.coordinates);
      group.append(s("rect", { x: x - unit * 2, y: y - unit * 2, width: unit * 4, height: unit * 4, rx: unit * 0.6 }));
    } else {
      group.append(s("path", { d: pathOf(g, p) }));
    }
    const title = s("title");
    title.textContent = name;
    group.append(title);
    if (labels) {
      const a = anchor(g);
      const [x, y] = p.xy(...a);
      const text = s("text", { x, y: y + unit * 5.5, "font-size": unit * 3.6, "text-anchor": "middle" });
      text.textContent = name;
      group.append(text);
    }
    svg.append(group);
  }
  const accuracy = s("circle", { class: "map-accuracy", r: 0, cx: -1e6, cy: -1e6 });
  const me = s("circle", { class: "map-me", r: unit * 2.2, cx: -1e6, cy: -1e6, "stroke-width": unit * 0.8 });
  const pin = s("g", { class: "map-pin", transform: "translate(-1000000 -1000000)" });
  pin.append(s("path", { d: `M0 0 L${-unit * 2.6} ${-unit * 5} A${unit * 3} ${unit * 3} 0 1 1 ${unit * 2.6} ${-unit * 5}Z`,
    "stroke-width": unit * 0.5 }));
  svg.append(accuracy, me, pin);
  if (onTap) {
    svg.classList.add("tappable");
    svg.addEventListener("click", (e) => {
      const point = svg.createSVGPoint();
      point.x = e.clientX;
      point.y = e.clientY;
      const local = point.matrixTransform(svg.getScreenCTM().inverse());
      const [lon, lat] = p.lonlat(local.x, local.y);
      onTap(lon, lat);
    });
  }
  container.replaceChildren(svg);
  return {
    setPosition(lon, lat, accuracyM) {
      const [x, y] = p.xy(lon, lat);
      me.setAttribute("cx", x); me.setAttribute("cy", y);
      accuracy.setAttribute("cx", x); accuracy.setAttribute("cy", y);
      accuracy.setAttribute("r", Math.max(0, Math.min(accuracyM || 0, 1000)));
    },
    setPin(lon, lat) {
      const [x, y] = p.xy(lon, lat);
      pin.setAttribute("transform", `translate(${x} ${y})`);
    },
    setTrack(points) {
      track.setAttribute("points", points.map(([lon, lat]) => p.xy(lon, lat).map((v) => v.toFixed(1)).join(",")).join(" "));
    },
  };
}

// "no map yet" placeholder when the member has never been online since enrolment
export function emptyMap(container) {
  const svg = s("svg", { viewBox: "0 0 100 60", class: "map" });
  svg.append(s("rect", { x: 0, y: 0, width: 100, height: 60, class: "map-bg" }));
  const t = s("text", { x: 50, y: 32, "text-anchor": "middle", "font-size": 5 });
  t.textContent = "地图尚未下载 · map not loaded yet";
  svg.append(t);
  container.replaceChildren(svg);
}
