/* The dispatcher console's renderer (feed "dispatch", see dashboard/pages/dispatch.py): open alarms
 * with their Acknowledge buttons, members by status, task acknowledgements as they arrive. State
 * through the shared sync module (live.js); gcc.live.state("dispatch") is what the tests read. */
(function () {
  const gcc = window.gcc = window.gcc || {};
  gcc.renderers = gcc.renderers || {};
  const ACKS_SHOWN = 30;
  const STATE_ORDER = {offline: 2, silent: 1, online: 0};

  gcc.renderers.dispatch = {
    fresh: function (s) {
      const st = {alarms: new Map(), members: new Map(), acks: [], alarmsVersion: 0, alarmsDrawn: -1};
      s.alarms.forEach(a => st.alarms.set(a.key, a));   // an alarm is (sensor, alarm id)
      s.members.forEach(m => st.members.set(m.terminal_id, m));
      return st;
    },
    frame: function (st, f) {
      const changes = f.changes || {};
      (changes.alarm || []).forEach(a => {
        st.alarmsVersion += 1;
        if (a.state === "cleared") st.alarms.delete(a.key);
        else st.alarms.set(a.key, Object.assign({}, st.alarms.get(a.key), a));
      });
      (changes.alarm_ack || []).forEach(x => {
        const a = st.alarms.get(x.key);
        if (a) { a.acknowledged_by = x.acknowledged_by; st.alarmsVersion += 1; }
      });
      (changes.status || []).forEach(x => {
        const m = st.members.get(x.terminal_id);
        if (m && x.t >= (m.state_t || 0)) { m.state = x.state; m.state_t = x.t; m.sos = x.sos; }
      });
      (changes.task_ack || []).forEach(x => {
        if (!st.acks.some(a => a.task_id === x.task_id && a.action === x.action && a.t === x.t)) st.acks.unshift(x);
      });
      st.acks.length = Math.min(st.acks.length, ACKS_SHOWN);
    },
  };

  function alarmRows(st) {
    const h = gcc.ui.html, L = gcc.live;
    if (st.alarmsDrawn === st.alarmsVersion) return window.dash_clientside.no_update;
    st.alarmsDrawn = st.alarmsVersion;
    const alarms = [...st.alarms.values()].sort((a, b) => (b.severity - a.severity) || (a.t - b.t));
    if (!alarms.length) return [h("Div", {className: "empty", children: "No open alarms 暂无告警"})];
    return alarms.map(a => h("Div", {className: "queue-row sev-" + a.severity, id: "dispatch-alarm-" + a.key, children: [
      h("Span", {className: "sev-dot", style: {background: L.colour(st, "severity", a.severity)}}),
      h("Span", {className: "row-title", children: L.label(st, "alarm_type", a.alarm_type)}),
      h("Span", {className: "row-where", children: a.where || a.grid_code}),
      h("Span", {className: "row-time", children: gcc.ui.age(a.t)}),
      a.acknowledged_by
        ? h("Span", {className: "acked-by", children: "✓ " + a.acknowledged_by})
        : h("Button", {className: "ack-button", id: {type: "dispatch-ack", alarm: a.alarm_id, sensor: a.sensor_id},
                       children: L.label(st, "action", "alarm.acknowledge"), n_clicks: 0}),
    ]}));
  }

  function memberSummary(st) {
    const h = gcc.ui.html, L = gcc.live;
    const counts = {online: 0, silent: 0, offline: 0};
    const sos = [];
    st.members.forEach(m => {
      if (m.state in counts) counts[m.state] += 1;   // a terminal never heard from is in none of them
      if (m.sos) sos.push(m);
    });
    const tiles = ["online", "silent", "offline"].map(s => h("Div", {className: "dispatch-count", id: "dispatch-count-" + s, children: [
      h("Span", {className: "sev-dot", style: {background: L.colour(st, "member_state", s)}}),
      h("Span", {className: "dispatch-count-value", children: String(counts[s])}),
      h("Span", {children: L.label(st, "member_state", s)})]}));
    const silent = [...st.members.values()].filter(m => m.state && m.state !== "online")
      .sort((a, b) => STATE_ORDER[b.state] - STATE_ORDER[a.state]).slice(0, 12)
      .map(m => h("Div", {className: "ticker-row", children: [
        h("Span", {className: "row-title", children: m.name}),
        h("Span", {className: "row-where", children: L.label(st, "role", m.role)}),
        h("Span", {className: "row-time", children: L.label(st, "member_state", m.state)})]}));
    const sosRows = sos.map(m => h("Div", {className: "queue-row sev-4", children: "SOS · " + m.name}));
    const unheard = st.members.size - counts.online - counts.silent - counts.offline;
    const notes = unheard ? [h("Div", {className: "empty", id: "dispatch-unheard",
                                       children: unheard + " not heard from yet 尚未上线"})]
      : sosRows.length || silent.length ? []
      : [h("Div", {className: "empty", children: "Every member is reporting 全员在线"})];
    return [h("Div", {className: "dispatch-counts", children: tiles}), ...sosRows, ...silent, ...notes];
  }

  function ackRows(st) {
    const h = gcc.ui.html, L = gcc.live;
    if (!st.acks.length) return [h("Div", {className: "empty", children: "No acknowledgements yet 暂无回执"})];
    return st.acks.map(a => h("Div", {className: "ticker-row", children: [
      h("Span", {className: "row-kind", children: L.label(st, "task_action", a.action)}),
      h("Span", {className: "row-title", children: a.name}),
      h("Span", {className: "row-where", children: a.task_id}),
      h("Span", {className: "row-time", children: gcc.ui.clock(a.t)})]}));
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    gcc: Object.assign({}, (window.dash_clientside || {}).gcc, {
      dispatchLive: function (snapshot, frame, url) {
        const reconnect = gcc.live.receive("dispatch", snapshot, frame, url);
        const st = gcc.live.state("dispatch");
        if (!st) return Array(3).fill(window.dash_clientside.no_update).concat([reconnect]);
        return [alarmRows(st), memberSummary(st), ackRows(st), reconnect];
      },
    }),
  });
})();
