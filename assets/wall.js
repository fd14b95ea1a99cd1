/* The wall display's renderer (feed "wall", see dashboard/pages/wall.py): its state, built from a
 * snapshot and updated by frames through the shared sync module (live.js), drawn by clientside
 * callbacks (no server round trip per update), and the map's style functions. Labels and colours
 * come with the snapshot (state.vocabulary). gcc.live.state("wall") is what the browser tests read. */
(function () {
  const gcc = window.gcc = window.gcc || {};
  gcc.renderers = gcc.renderers || {};
  const TICKER_LENGTH = 14;

  function wallState(st) { return st || gcc.live.state("wall"); }
  function label(group, key) { return gcc.live.label(wallState(), group, key); }
  function colour(group, key, fallback) { return gcc.live.colour(wallState(), group, key, fallback); }

  /* {field name: its position} for a change that travels as a list of values (the snapshot names them) */
  function positions(fields) {
    const at = {};
    (fields || []).forEach((name, i) => { at[name] = i; });
    return at;
  }

  function tick(st, entry) {
    const id = entry.kind + ":" + entry.item.key;
    st.ticker = [entry].concat(st.ticker.filter(e => e.kind + ":" + e.item.key !== id))
      .slice(0, TICKER_LENGTH);
  }

  gcc.renderers.wall = {
    fresh: function (s) {
      const st = {members: new Map(), alarms: new Map(), reports: new Map(), ticker: [], roster: new Map(),
                  dirty: new Set(), layerDrawn: false, items: 0, itemsDrawn: -1,
                  grids: s.grids || [], memberTotal: s.member_total, closuresToday: s.closures_today,
                  heat: s.heat || null, reportWindowS: s.report_window_s, bounds: s.bounds,
                  reportsMax: s.reports_max, reportsTruncated: s.reports_total > s.reports.length,
                  cases: new Map((s.cases || []).map(c => [c.key, c])), casesDrawn: null, closedSeen: new Set(),
                  dayStart: s.day_start, timeScale: s.time_scale || 1,
                  // the case states by name, and those of a finished case (dashboard/vocabulary.py)
                  caseState: (s.vocabulary || {}).case_states || {},
                  finished: new Set((s.vocabulary || {}).finished_case_states || [])};
      const fields = s.member_fields;   // members travel as arrays of these fields' values
      st.fixAt = positions(s.fix_fields);   // fixes too: each value read by its field's name
      s.members.forEach(values => {
        const m = {};
        fields.forEach((name, i) => { m[name] = values[i]; });
        m.out_of_area = m.lon != null && !m.grid_code;
        st.members.set(m.member, m);
      });
      (s.roster || []).forEach(([id, name, role, grid]) => st.roster.set(id, {name: name, role: role, home_grid_code: grid}));
      // keyed as the live state keys them: an alarm by (sensor, alarm id), a report by (terminal, report id)
      s.alarms.forEach(a => st.alarms.set(a.key, a));
      s.reports.forEach(r => st.reports.set(r.key, r));
      st.ticker = [...s.alarms.map(a => ({kind: "alarm", item: a})), ...s.reports.map(r => ({kind: "report", item: r}))]
        .sort((a, b) => b.item.t - a.item.t).slice(0, TICKER_LENGTH);
      return st;
    },
    frame: function (st, f) {
      const changes = f.changes || {};
      if (gcc.measure) {  // set by bench/wall_bench.py: publish -> browser latency and frame size
        const now = Date.now() / 1000;
        (changes.fix || []).forEach(x => gcc.measure.latencies.push(now - x[st.fixAt.t]));
        gcc.measure.frameBytes.push(JSON.stringify(f).length);
      }
      // a fix travels compact: its values in the order of the snapshot's fix_fields
      const at = st.fixAt;
      (changes.fix || []).forEach(x => {
        const id = x[at.member], lon = x[at.lon], lat = x[at.lat], t = x[at.t], battery = x[at.battery_pct],
              grid = x[at.grid_code];
        let m = st.members.get(id);
        if (!m) {
          const known = st.roster.get(id) || {};
          m = {member: id, state: "online", name: known.name, role: known.role, home_grid_code: known.home_grid_code};
          st.layerDrawn = false;  // a member new to the map: the layer is rebuilt once
        }
        if ((m.t || 0) > t) return;
        Object.assign(m, {lon: lon, lat: lat, t: t, grid_code: grid, out_of_area: !grid, battery_pct: battery});
        if (m.state !== "offline" || t > (m.state_t || 0)) m.state = "online";
        st.members.set(id, m);
        st.dirty.add(id);
      });
      (changes.status || []).forEach(x => {
        const m = st.members.get(x.member);
        if (m && x.t >= (m.state_t || 0)) {
          m.state = x.state; m.state_t = x.t; m.sos = x.sos;
          if (x.battery_pct != null) m.battery_pct = x.battery_pct;
          st.dirty.add(x.member);
        }
      });
      (changes.alarm || []).forEach(a => {
        st.items += 1;
        if (a.state === "cleared") { st.alarms.delete(a.key); return; }
        st.alarms.set(a.key, Object.assign({}, st.alarms.get(a.key), a));
        tick(st, {kind: "alarm", item: st.alarms.get(a.key)});
      });
      (changes.alarm_ack || []).forEach(x => {
        const a = st.alarms.get(x.key);
        if (a) { a.acknowledged_by = x.acknowledged_by; st.items += 1; }
      });
      (changes.report || []).forEach(r => { st.items += 1; st.reports.set(r.key, r); tick(st, {kind: "report", item: r}); });
      (changes.case || []).forEach(c => {
        if (c.state === st.caseState.CLOSED && c.closed_at >= st.dayStart && !st.closedSeen.has(c.key + "@" + c.closed_at)) {
          st.closedSeen.add(c.key + "@" + c.closed_at);
          st.closuresToday += 1;
        }
        if (st.finished.has(c.state)) st.cases.delete(c.key); else st.cases.set(c.key, c);
      });
      const cutoff = Date.now() / 1000 - st.reportWindowS;
      st.reports.forEach((r, id) => { if (r.t < cutoff) { st.reports.delete(id); st.items += 1; } });
      if (st.reports.size > st.reportsMax) dropLeastSevere(st);
    },
  };

  /* Past reportsMax the wall keeps the most severe and newest reports (like the snapshot does) and
   * says in its counter that it holds fewer than came. */
  function dropLeastSevere(st) {
    const ranked = [...st.reports.values()].sort((a, b) => (b.severity - a.severity) || (b.t - a.t));
    ranked.slice(st.reportsMax).forEach(r => st.reports.delete(r.key));
    st.reportsTruncated = true;
    st.items += 1;
  }

  function point(id, lon, lat, props) {
    return {type: "Feature", geometry: {type: "Point", coordinates: [lon, lat]}, properties: Object.assign({id: id}, props)};
  }
  function collection(features) { return {type: "FeatureCollection", features: features}; }

  /* The escalation queue: an SOS nobody has acknowledged first, then what is overdue (the longest
   * overdue first), then urgent before normal, each by the time it has left. */
  function phase(c, now) {
    if (c.deadline == null) return "none";
    return now >= c.deadline ? "overdue" : (c.warn_at != null && now >= c.warn_at) ? "warning" : "ok";
  }
  function escalationQueue(st, now) {
    const rank = c => (c.source === "sos" && !c.acknowledged ? 0 : 4) + (phase(c, now) === "overdue" ? 0 : 2) +
                      (c.urgency === "urgent" ? 0 : 1);
    return [...st.cases.values()].sort((a, b) => (rank(a) - rank(b)) ||
                                                 ((a.deadline || Infinity) - (b.deadline || Infinity)));
  }
  function countdown(c, now) {
    if (c.deadline == null) return label("case_state", c.state);
    const left = c.deadline - now;
    return left >= 0 ? gcc.ui.span(left) : "+" + gcc.ui.span(-left) + " 超期";
  }

  function describe(kind, it) {
    return kind === "alarm"
      ? {title: label("alarm_type", it.alarm_type), where: it.where || it.grid_code}
      : {title: label("category", it.category), where: it.where || it.grid_code};
  }

  function counters(st) {
    const h = gcc.ui.html;
    let online = 0, onMap = 0;
    st.members.forEach(m => { onMap += 1; if (m.state === "online") online += 1; });
    const bySeverity = {4: 0, 3: 0, 2: 0, 1: 0};
    st.reports.forEach(r => { bySeverity[r.severity] = (bySeverity[r.severity] || 0) + 1; });
    let critical = 0, overdue = 0;
    st.alarms.forEach(a => { if (a.severity >= 4) critical += 1; });
    const now = Date.now() / 1000;
    st.cases.forEach(c => { if (c.deadline != null && now >= c.deadline) overdue += 1; });
    function tile(id, text, value, sub, cls) {
      return h("Div", {className: "wall-tile " + (cls || ""), id: id, children: [
        h("Div", {className: "wall-tile-value", children: String(value)}),
        h("Div", {className: "wall-tile-label", children: text}),
        h("Div", {className: "wall-tile-sub", children: sub})]});
    }
    return [
      tile("wall-count-online", "members online 在线", online, "of " + st.memberTotal + " · on the map " + onMap),
      tile("wall-count-reports", "reports · 24 h 上报", st.reports.size + (st.reportsTruncated ? "+" : ""),
           [4, 3, 2, 1].map(s => label("severity", s) + " " + bySeverity[s]).join(" · "),
           bySeverity[4] ? "wall-tile-alert" : ""),
      tile("wall-count-alarms", "active alarms 告警", st.alarms.size, critical + " " + label("severity", 4),
           critical ? "wall-tile-alert" : ""),
      tile("wall-count-overdue", "overdue now 超期", overdue, st.cases.size + " open cases 在办",
           overdue ? "wall-tile-alert" : ""),
      tile("wall-count-closed", "closed today 今日结案", st.closuresToday, "cases closed since 00:00"),
    ];
  }

  function row(entry, cls) {
    const h = gcc.ui.html;
    const it = entry.item, kind = entry.kind;
    const {title, where} = describe(kind, it);
    const acked = kind === "alarm" && it.acknowledged_by;
    return h("Div", {className: cls + " sev-" + it.severity + (acked ? " acked" : ""), children: [
      h("Span", {className: "sev-dot", style: {background: colour("severity", it.severity)}}),
      h("Span", {className: "row-kind", children: kind === "alarm" ? "ALARM" : "REPORT"}),
      h("Span", {className: "row-title", children: title + (acked ? " ✓" : "")}),
      h("Span", {className: "row-where", children: where || ""}),
      // who needs help first in the alarm's building: a count from the server, never a name
      kind === "alarm" && it.needs_help > 0 ? h("Span", {className: "row-help", children:
        "⚠ " + it.needs_help + " 位需关注人员 · " + it.needs_help + " need help first"}) : null,
      h("Span", {className: "row-time", children: cls === "queue-row" ? gcc.ui.age(it.t) : gcc.ui.clock(it.t)})]});
  }

  function caseRow(c, now) {
    const h = gcc.ui.html;
    const ph = phase(c, now);
    const sos = c.source === "sos" && !c.acknowledged;
    const climbed = c.level && c.level !== "grid";
    return h("Div", {className: "queue-row case-row " + ph + (sos ? " sos" : ""), id: "wall-case-" + c.key, children: [
      h("Span", {className: "sev-dot", style: {background: colour("urgency", c.urgency)}}),
      h("Span", {className: "row-kind", children: [label("case_stage", c.stage || c.state),
        climbed ? h("Span", {className: "row-level", children: "↑ " + label("org_level", c.level)}) : null]}),
      h("Span", {className: "row-title", children: c.title || label("category", c.category)}),
      h("Span", {className: "row-where", children: (c.where || "") + " · " + (c.handler || "unassigned 未派遣")}),
      h("Span", {className: "row-time countdown " + ph, children: countdown(c, now)})]});
  }

  /* Open cases on the map (those with a place): the overdue pulse; an SOS nobody has acknowledged
   * pulses red where its member is now (their live position), until a person acknowledges it.
   * Redrawn when a case comes, goes or changes phase, or an SOS member moves. */
  function casesLayer(st, now) {
    const features = [];
    st.cases.forEach(c => {
      const sos = c.source === "sos" && !c.acknowledged;
      const m = sos && c.sos_member ? st.members.get(c.sos_member) : null;
      const lon = m && m.lon != null ? m.lon : c.lon, lat = m && m.lat != null ? m.lat : c.lat;
      if (lon != null) features.push(point(c.key, lon, lat, {phase: sos ? "sos" : phase(c, now),
        label: (c.title || "") + " · " + (sos ? "SOS, not acknowledged 未确认" : countdown(c, now)),
        at: sos ? lon.toFixed(5) + "," + lat.toFixed(5) : ""}));
    });
    const drawn = features.map(f => f.properties.id + ":" + f.properties.phase + f.properties.at).join(",");
    if (drawn === st.casesDrawn) return window.dash_clientside.no_update;
    st.casesDrawn = drawn;
    return collection(features);
  }

  function gridCounts(st) {
    const counts = {};
    st.alarms.forEach(a => { if (a.grid_code) counts[a.grid_code] = (counts[a.grid_code] || 0) + 2; });
    st.reports.forEach(r => { if (r.grid_code) counts[r.grid_code] = (counts[r.grid_code] || 0) + 1; });
    return counts;
  }

  /* A fix outside every grid is stored with no grid (members near the city's edge, GPS noise):
   * the member is where the fix says, "out of area". */
  function memberTooltip(m) {
    return (m.name || "?") + " · " + label("role", m.role) + " · " + label("member_state", m.state) +
           (m.out_of_area ? " · out of area 区域外" : "") + (m.battery_pct != null ? " · " + m.battery_pct + "%" : "");
  }

  function setTooltipText(marker, text) {
    const tooltip = marker.getTooltip();
    const el = tooltip && tooltip.getContent();
    if (!(el instanceof HTMLElement)) { marker.setTooltipContent(gcc.ui.text(text)); return; }
    if (el.textContent === text) return;
    el.textContent = text;
    if (tooltip.isOpen()) tooltip.update();
  }

  /* Members: the GeoJSON layer is rebuilt only when members appear on the map; otherwise the markers
   * that changed are moved and restyled in place (thousands of markers, two frames a second). */
  function membersLayer(st) {
    if (!st.layerDrawn) {
      gcc.markers = new Map();
      st.layerDrawn = true;
      st.dirty.clear();
      const features = [];
      st.members.forEach(m => features.push(point(m.member, m.lon, m.lat,
        {state: m.state, role: m.role, name: m.name, battery_pct: m.battery_pct, out_of_area: m.out_of_area})));
      return collection(features);
    }
    st.dirty.forEach(id => {
      const marker = gcc.markers.get(id), m = st.members.get(id);
      if (!marker || !m) return;
      marker.setLatLng([m.lat, m.lon]);
      marker.setStyle({fillColor: colour("member_state", m.state)});
      setTooltipText(marker, memberTooltip(m));
    });
    st.dirty.clear();
    return window.dash_clientside.no_update;
  }

  /* Alarm and report layers: redrawn only when an alarm or report came, went or aged out (a redraw
   * restarts the alarms' pulse). */
  function itemLayers(st) {
    const noUpdate = window.dash_clientside.no_update;
    if (st.itemsDrawn === st.items) return [noUpdate, noUpdate, noUpdate];
    st.itemsDrawn = st.items;
    const alarms = [], reports = [];
    st.alarms.forEach(a => { if (a.lon != null) alarms.push(point(a.key, a.lon, a.lat,
      {severity: a.severity, label: label("alarm_type", a.alarm_type)})); });
    st.reports.forEach(r => reports.push(point(r.key, r.lon, r.lat,
      {severity: r.severity, label: label("category", r.category), t: r.t, colour: colour("severity", r.severity)})));
    return [collection(alarms), collection(reports), {counts: gridCounts(st)}];
  }

  function heatFor(st, windowName) {
    const heat = st && st.heat;
    return (heat && heat[windowName]) || collection([]);
  }

  function render(st, windowName) {
    const h = gcc.ui.html;
    const now = Date.now() / 1000;
    const queue = escalationQueue(st, now).slice(0, TICKER_LENGTH);
    return [membersLayer(st), ...itemLayers(st), casesLayer(st, now),
            counters(st),
            queue.length ? queue.map(c => caseRow(c, now)) : [h("Div", {className: "empty", children: "No open case 暂无在办案件"})],
            st.ticker.length ? st.ticker.map(t => row(t, "ticker-row")) : [h("Div", {className: "empty", children: "Quiet 平稳"})],
            heatFor(st, windowName)];
  }

  let fittedFor = {el: null, scope: null};   // the map element and scope the map was last fitted to

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    gcc: Object.assign({}, (window.dash_clientside || {}).gcc, {
      wallLive: function (snapshot, frame, ticks, windowName, url) {
        const noUpdate = window.dash_clientside.no_update;
        const reconnect = gcc.live.receive("wall", snapshot, frame, url);
        const st = gcc.live.state("wall");
        if (!st) return Array(11).fill(noUpdate).concat([reconnect]);
        // once per map and scope: let the map measure its final size, then fit it to the scope (the
        // map was created before the page's layout had settled); a resync of the same scope keeps
        // whatever pan and zoom someone chose
        const mapEl = document.getElementById("wall-map");
        const fitted = fittedFor.el === mapEl && fittedFor.scope === st.scope;
        const fit = fitted ? [noUpdate, noUpdate] : [Date.now(), {bounds: st.bounds, options: {padding: [16, 16]}}];
        fittedFor = {el: mapEl, scope: st.scope};
        return render(st, windowName || "today").concat(fit, [reconnect]);
      },
      wallHeat: function (heat, windowName) {
        const st = gcc.live.state("wall");
        if (heat && st) st.heat = heat;
        return heatFor(st, windowName || "today");
      },
    }),
  });

  /* dash-leaflet functions, referenced from Python as Namespace("gcc", "wall") */
  gcc.wall = {
    gridStyle: function (feature, context) {
      const n = ((context.hideout || {}).counts || {})[feature.properties.id] || 0;
      const fill = n === 0 ? "#1c2a3a" : n < 3 ? "#5a4a12" : n < 6 ? "#8a3b12" : "#a0151b";
      return {color: "#4a6a8a", weight: 1, fillColor: fill, fillOpacity: n ? 0.55 : 0.35};
    },
    heatStyle: function (feature, context) {
      const k = Math.min(1, (feature.properties.count || 0) / 4);
      return {stroke: false, fillColor: k > 0.75 ? "#ff453a" : k > 0.4 ? "#ff9f0a" : "#ffd60a", fillOpacity: 0.25 + 0.45 * k};
    },
    memberMarker: function (feature, latlng) {
      const p = feature.properties;
      const marker = L.circleMarker(latlng, {radius: 5, weight: 2, color: colour("role", p.role, "#fff"),
                                             fillColor: colour("member_state", p.state), fillOpacity: 0.95});
      gcc.ui.textTooltip(marker, memberTooltip({member: p.id, name: p.name, role: p.role, state: p.state,
                                                battery_pct: p.battery_pct, out_of_area: p.out_of_area}));
      (gcc.markers = gcc.markers || new Map()).set(p.id, marker);
      return marker;
    },
    reportMarker: function (feature, latlng) {
      const p = feature.properties;
      const ageH = Math.max(0, (Date.now() / 1000 - p.t) / 3600);
      return gcc.ui.textTooltip(L.circleMarker(latlng, {radius: 4 + 2 * p.severity, weight: 1, color: "#000",
                                                        fillColor: p.colour,
                                                        fillOpacity: Math.max(0.35, 0.95 - ageH / 24)}), p.label);
    },
    caseMarker: function (feature, latlng) {
      const p = feature.properties;
      const sos = p.phase === "sos";
      const icon = L.divIcon({className: "case-icon " + p.phase, html: "<span></span>", iconSize: sos ? [34, 34] : [26, 26]});
      return gcc.ui.textTooltip(L.marker(latlng, {icon: icon, interactive: true, zIndexOffset: sos ? 1000 : 0}), p.label);
    },
    alarmMarker: function (feature, latlng) {
      const p = feature.properties;
      const icon = L.divIcon({className: "alarm-icon sev-" + p.severity, html: "<span></span>", iconSize: [22, 22]});
      return gcc.ui.textTooltip(L.marker(latlng, {icon: icon}), p.label);
    },
  };
})();
