/* The wall display's browser side: live state kept here, updated from Socket.IO snapshots and
 * frames (clientside callbacks: no server round trip per update), and the map's style functions.
 * window.gcc.state is also what the browser tests read. */
(function () {
  const SEVERITY_COLOUR = {4: "#ff3b30", 3: "#ff9500", 2: "#ffd60a", 1: "#64d2ff"};
  const SEVERITY_NAME = {4: "critical", 3: "high", 2: "medium", 1: "low"};
  const STATUS_COLOUR = {online: "#30d158", unknown: "#ff9f0a", offline: "#8e8e93"};
  const ROLE_COLOUR = {grid_administrator: "#0a84ff", grid_coordinator: "#64d2ff",
                       grid_police_officer: "#f2f2f7", grid_supervisor: "#bf5af2"};
  const ROLE_NAME = {grid_administrator: "Administrator 管理员", grid_coordinator: "Coordinator 协管员",
                     grid_police_officer: "Police officer 民警", grid_supervisor: "Supervisor 监督员"};
  const ALARM_NAME = {elevator_entrapment: "People trapped in elevator 电梯困人",
                      elevator_fault: "Elevator fault 电梯故障", elevator_door_fault: "Elevator door fault 电梯门故障",
                      gas_over_threshold: "Gas over threshold 燃气超限", gas_detector_fault: "Gas detector fault",
                      meter_continuous_flow: "Continuous flow (leak) 持续流量", meter_spike: "Meter spike 用量突增",
                      low_battery: "Low battery", tamper: "Tamper 防拆"};
  const REPORT_WINDOW_S = 86400;

  function fresh() {
    return {scope: null, members: new Map(), alarms: new Map(), reports: new Map(), ticker: [],
            memberTotal: 0, closuresToday: 0, heat: null, frames: 0, lastFrameAt: 0,
            roster: new Map(), dirty: new Set(), layerDrawn: false, seq: null, items: 0, itemsDrawn: -1};
  }
  const gcc = window.gcc = window.gcc || {};
  gcc.state = fresh();

  function html(type, props) { return {namespace: "dash_html_components", type: type, props: props}; }
  function age(t) {
    const s = Math.max(0, Date.now() / 1000 - t);
    if (s < 60) return Math.round(s) + " s";
    if (s < 3600) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }
  function clock(t) { return new Date(t * 1000).toLocaleTimeString("en-GB", {hour12: false}); }

  function tick(entry) {
    const st = gcc.state;
    st.ticker.unshift(entry);
    if (st.ticker.length > 14) st.ticker.length = 14;
  }

  function applySnapshot(s) {
    const st = gcc.state = fresh();
    st.scope = s.scope;
    st.seq = s.seq;
    st.grids = s.grids || [];
    st.memberTotal = s.member_total;
    st.closuresToday = s.closures_today;
    st.heat = s.heat || null;
    s.members.forEach(m => st.members.set(m.terminal_id, m));
    (s.roster || []).forEach(([id, name, role, grid]) => st.roster.set(id, {name: name, role: role, grid: grid}));
    s.alarms.forEach(a => st.alarms.set(a.alarm_id, a));
    s.reports.forEach(r => st.reports.set(r.report_id, r));
    const recent = [...s.alarms.map(a => ({kind: "alarm", item: a})), ...s.reports.map(r => ({kind: "report", item: r}))]
      .sort((a, b) => b.item.t - a.item.t).slice(0, 14);
    st.ticker = recent;
    // frames of this scope that overtook the snapshot on their way here, newer than it: apply them now
    (gcc.recentFrames || []).filter(f => f.scope === st.scope && f.seq > st.seq)
      .sort((a, b) => a.seq - b.seq).forEach(f => takeFrame(f, false));
  }

  /* Frames are numbered per room; the snapshot says which number it is current to. A frame is
   * applied once and in order; a gap (a frame lost in between) asks for a resync. */
  function takeFrame(f, remember = true) {
    const st = gcc.state;
    if (remember) gcc.recentFrames = (gcc.recentFrames || []).concat([f]).slice(-20);
    if (f.scope !== st.scope) return "skip";                  // a straggler of the previous scope
    if (st.seq === null || f.seq <= st.seq) return "skip";   // before the snapshot, or already in it
    if (f.seq > st.seq + 1) return "gap";
    applyFrame(f);
    return "applied";
  }

  function applyFrame(f) {
    const st = gcc.state;
    st.seq = f.seq;
    if (gcc.measure) {  // set by bench/wall_bench.py: publish -> browser latency and frame size
      const now = Date.now() / 1000;
      f.fixes.forEach(x => gcc.measure.latencies.push(now - x[3]));
      gcc.measure.frameBytes.push(JSON.stringify(f).length);
    }
    // a fix travels compact: [terminal_id, lon, lat, t, battery, grid]
    f.fixes.forEach(([id, lon, lat, t, battery, grid]) => {
      let m = st.members.get(id);
      if (!m) {
        const known = st.roster.get(id) || {};
        m = {terminal_id: id, state: "online", name: known.name, role: known.role};
        st.layerDrawn = false;  // a member new to the map: the layer is rebuilt once
      }
      if ((m.t || 0) > t) return;
      Object.assign(m, {lon: lon, lat: lat, t: t, grid: grid, battery: battery});
      if (m.state !== "offline" || t > (m.stateT || 0)) m.state = "online";
      st.members.set(id, m);
      st.dirty.add(id);
    });
    f.statuses.forEach(x => {
      const m = st.members.get(x.terminal_id);
      if (m && x.t >= (m.stateT || 0)) {
        m.state = x.state; m.stateT = x.t; if (x.battery != null) m.battery = x.battery; m.sos = x.sos;
        st.dirty.add(x.terminal_id);
      }
    });
    f.alarms.forEach(a => {
      st.items += 1;
      if (a.state === "cleared") { st.alarms.delete(a.alarm_id); return; }
      st.alarms.set(a.alarm_id, a);
      tick({kind: "alarm", item: a});
    });
    f.reports.forEach(r => { st.items += 1; st.reports.set(r.report_id, r); tick({kind: "report", item: r}); });
    const cutoff = Date.now() / 1000 - REPORT_WINDOW_S;
    st.reports.forEach((r, id) => { if (r.t < cutoff) { st.reports.delete(id); st.items += 1; } });
    st.frames += 1;
    st.lastFrameAt = Date.now();
  }

  function point(id, lon, lat, props) {
    return {type: "Feature", geometry: {type: "Point", coordinates: [lon, lat]}, properties: Object.assign({id: id}, props)};
  }
  function collection(features) { return {type: "FeatureCollection", features: features}; }

  function openItems() {
    const st = gcc.state;
    const items = [];
    st.alarms.forEach(a => items.push({kind: "alarm", item: a}));
    st.reports.forEach(r => items.push({kind: "report", item: r}));
    items.sort((a, b) => (b.item.severity - a.item.severity) || (a.item.t - b.item.t));
    return items;
  }

  function describe(kind, it) {
    return kind === "alarm"
      ? {title: ALARM_NAME[it.alarm_type] || it.alarm_type, where: it.building || it.sensor_id}
      : {title: it.label || (it.category || "").replace(/_/g, " "), where: it.address || it.grid};
  }

  function counters() {
    const st = gcc.state;
    let online = 0, onDuty = 0;
    st.members.forEach(m => { onDuty += 1; if (m.state === "online") online += 1; });
    const bySeverity = {4: 0, 3: 0, 2: 0, 1: 0};
    st.reports.forEach(r => { bySeverity[r.severity] = (bySeverity[r.severity] || 0) + 1; });
    let critical = 0;
    st.alarms.forEach(a => { if (a.severity >= 4) critical += 1; });
    function tile(id, label, value, sub, cls) {
      return html("Div", {className: "wall-tile " + (cls || ""), id: id, children: [
        html("Div", {className: "wall-tile-value", children: String(value)}),
        html("Div", {className: "wall-tile-label", children: label}),
        html("Div", {className: "wall-tile-sub", children: sub})]});
    }
    return [
      tile("wall-count-online", "members online 在线", online, "of " + st.memberTotal + " · on duty today " + onDuty),
      tile("wall-count-incidents", "open incidents 事件", st.reports.size,
           [4, 3, 2, 1].map(s => SEVERITY_NAME[s] + " " + bySeverity[s]).join(" · "),
           bySeverity[4] ? "wall-tile-alert" : ""),
      tile("wall-count-alarms", "active alarms 告警", st.alarms.size, critical + " critical", critical ? "wall-tile-alert" : ""),
      tile("wall-count-closed", "closed today 今日结案", st.closuresToday, "cases closed since 00:00"),
    ];
  }

  function row(entry, cls) {
    const it = entry.item, kind = entry.kind;
    const {title, where} = describe(kind, it);
    return html("Div", {className: cls + " sev-" + it.severity, children: [
      html("Span", {className: "sev-dot", style: {background: SEVERITY_COLOUR[it.severity]}}),
      html("Span", {className: "row-kind", children: kind === "alarm" ? "ALARM" : "REPORT"}),
      html("Span", {className: "row-title", children: title}),
      html("Span", {className: "row-where", children: where || ""}),
      html("Span", {className: "row-time", children: cls === "queue-row" ? age(it.t) : clock(it.t)})]});
  }

  function gridCounts() {
    const counts = {};
    gcc.state.alarms.forEach(a => { if (a.grid) counts[a.grid] = (counts[a.grid] || 0) + 2; });
    gcc.state.reports.forEach(r => { if (r.grid) counts[r.grid] = (counts[r.grid] || 0) + 1; });
    return counts;
  }

  function memberTooltip(m) {
    return (m.name || m.terminal_id) + " · " + (ROLE_NAME[m.role] || m.role || "") + " · " + m.state +
           (m.battery != null ? " · " + m.battery + "%" : "");
  }

  /* Members: the GeoJSON layer is rebuilt only when members appear on the map; otherwise the markers
   * that changed are moved and restyled in place (thousands of markers, two frames a second). */
  function membersLayer() {
    const st = gcc.state;
    if (!st.layerDrawn) {
      gcc.markers = new Map();
      st.layerDrawn = true;
      st.dirty.clear();
      const features = [];
      st.members.forEach(m => features.push(point(m.terminal_id, m.lon, m.lat,
        {state: m.state, role: m.role, name: m.name, grid: m.grid, battery: m.battery})));
      return collection(features);
    }
    st.dirty.forEach(id => {
      const marker = gcc.markers.get(id), m = st.members.get(id);
      if (!marker || !m) return;
      marker.setLatLng([m.lat, m.lon]);
      marker.setStyle({fillColor: STATUS_COLOUR[m.state] || "#8e8e93"});
      marker.setTooltipContent(memberTooltip(m));
    });
    st.dirty.clear();
    return window.dash_clientside.no_update;
  }

  /* Alarm and incident layers: redrawn only when an alarm or report came, went or aged out (a redraw
   * restarts the alarms' pulse). */
  function itemLayers() {
    const st = gcc.state, noUpdate = window.dash_clientside.no_update;
    if (st.itemsDrawn === st.items) return [noUpdate, noUpdate, noUpdate];
    st.itemsDrawn = st.items;
    const alarms = [], reports = [];
    st.alarms.forEach(a => { if (a.lon != null) alarms.push(point(a.alarm_id, a.lon, a.lat,
      {severity: a.severity, type: a.alarm_type, label: ALARM_NAME[a.alarm_type] || a.alarm_type})); });
    st.reports.forEach(r => reports.push(point(r.report_id, r.lon, r.lat,
      {severity: r.severity, category: r.category, label: r.label, t: r.t})));
    return [collection(alarms), collection(reports), {counts: gridCounts()}];
  }

  function render(windowName) {
    const st = gcc.state;
    const queue = openItems().slice(0, 14);
    return [membersLayer(), ...itemLayers(),
            counters(),
            queue.length ? queue.map(q => row(q, "queue-row")) : [html("Div", {className: "empty", children: "Nothing open 暂无待办"})],
            st.ticker.length ? st.ticker.map(t => row(t, "ticker-row")) : [html("Div", {className: "empty", children: "Quiet 平稳"})],
            heatFor(windowName)];
  }

  function heatFor(windowName) {
    const heat = gcc.state.heat;
    return (heat && heat[windowName]) || collection([]);
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    gcc: {
      applyLive: function (snapshot, frame, windowName, url) {
        const trig = (window.dash_clientside.callback_context.triggered || []).map(t => t.prop_id);
        let reconnect = window.dash_clientside.no_update;
        if (trig.some(p => p.endsWith("data-snapshot")) && snapshot) applySnapshot(snapshot);
        else if (trig.some(p => p.endsWith("data-frame")) && frame) {
          if (takeFrame(frame) === "gap") {
            gcc.resyncs = (gcc.resyncs || 0) + 1;   // a new URL makes the component reconnect: snapshot
            reconnect = url.replace(/&resync=\d+$/, "") + "&resync=" + gcc.resyncs;
          }
        }
        return render(windowName || "today").concat([reconnect]);
      },
      applyHeat: function (heat, windowName) {
        if (heat) gcc.state.heat = heat;
        return heatFor(windowName || "today");
      },
      connection: function (connected) {
        return connected ? ["live 实时", "wall-conn live"] : ["reconnecting… 重连中", "wall-conn down"];
      },
    },
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
      const marker = L.circleMarker(latlng, {radius: 5, weight: 2, color: ROLE_COLOUR[p.role] || "#fff",
                                             fillColor: STATUS_COLOUR[p.state] || "#8e8e93", fillOpacity: 0.95});
      marker.bindTooltip(memberTooltip({terminal_id: p.id, name: p.name, role: p.role, state: p.state, battery: p.battery}));
      (gcc.markers = gcc.markers || new Map()).set(p.id, marker);
      return marker;
    },
    reportMarker: function (feature, latlng) {
      const p = feature.properties;
      const ageH = Math.max(0, (Date.now() / 1000 - p.t) / 3600);
      return L.circleMarker(latlng, {radius: 4 + 2 * p.severity, weight: 1, color: "#000",
                                     fillColor: SEVERITY_COLOUR[p.severity], fillOpacity: Math.max(0.35, 0.95 - ageH / 24)})
        .bindTooltip(p.label || (p.category || "").replace(/_/g, " "));
    },
    alarmMarker: function (feature, latlng) {
      const p = feature.properties;
      const icon = L.divIcon({className: "alarm-icon sev-" + p.severity, html: "<span></span>", iconSize: [22, 22]});
      return L.marker(latlng, {icon: icon}).bindTooltip(p.label);
    },
  };
})();
