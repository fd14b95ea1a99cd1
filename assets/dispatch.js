/* The dispatcher console's renderer (feed "dispatch", see dashboard/pages/dispatch.py): the dispatch
 * queue (cases to register, to dispatch, offered), the tasks in progress (offered → en route → on
 * scene → done), open alarms with their Acknowledge buttons, members by status, answers on the
 * generic task channel as they arrive; the keyboard (↑↓ Enter 1–9 Esc). State
 * through the shared sync module (live.js); gcc.live.state("dispatch") is what the tests read. */
(function () {
  const gcc = window.gcc = window.gcc || {};
  gcc.renderers = gcc.renderers || {};
  const ACKS_SHOWN = 30;
  const STATE_ORDER = {offline: 2, silent: 1, online: 0};
  const TASKS_SHOWN = 40;
  const QUEUE_SHOWN = 60;
  const ALARMS_SHOWN = 40;

  gcc.renderers.dispatch = {
    fresh: function (s) {
      const st = {alarms: new Map(), members: new Map(), acks: [], alarmsVersion: 0, alarmsDrawn: -1,
                  cases: new Map(), order: [], tasks: new Map(), automatic: new Set(s.automatic || []),
                  words: consoleWords(s.vocabulary)};
      s.alarms.forEach(a => st.alarms.set(a.key, a));   // an alarm is (sensor, alarm id)
      (s.cases || []).forEach(c => track(st, c, null));
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
      (changes.case || []).forEach(c => track(st, c, Date.now() / 1000));
      (changes.task_ack || []).forEach(x => {
        if (!st.acks.some(a => a.task_id === x.task_id && a.action === x.action && a.t === x.t)) st.acks.unshift(x);
      });
      st.acks.length = Math.min(st.acks.length, ACKS_SHOWN);
    },
  };

  /* The case states the console sorts by, and its words for them, from the snapshot's vocabulary
   * (dashboard/vocabulary.py; the states are spelled once, in core.catalogue.CaseState): `queue`,
   * what waits for a dispatcher and what it waits for; `steps`, a task from its offer to its
   * handler's feedback (then it awaits verification); `state`, each state's value by its name;
   * `action`, each audit action's key by its name (core.catalogue.AuditAction). */
  function consoleWords(vocabulary) {
    const v = vocabulary || {}, words = v.console || {queue: {}, task_steps: []};
    return {queue: words.queue, steps: words.task_steps, state: v.case_states || {}, action: v.audit_actions || {},
            inProgress: new Set(words.task_steps.map(s => s[0]))};
  }

  /* A case's place in the queue and among the tasks in progress; `seen`: when its state changed
   * (null for a snapshot: not known here; the countdown is the stage's deadline either way). */
  function track(st, c, seen) {
    if (c.state in st.words.queue) st.cases.set(c.key, c); else st.cases.delete(c.key);
    if (!st.words.inProgress.has(c.state)) { st.tasks.delete(c.key); return; }
    const before = st.tasks.get(c.key);
    const since = before && before.state === c.state ? before.since : seen;
    st.tasks.set(c.key, Object.assign({}, c, {since: since}));
  }

  function taskRows(st, selected) {
    const h = gcc.ui.html, L = gcc.live;
    const now = Date.now() / 1000;
    const tasks = [...st.tasks.values()].sort((a, b) => (a.deadline || 9e12) - (b.deadline || 9e12))
      .slice(0, TASKS_SHOWN);
    if (!tasks.length) {
      return changed(st, "tasksDrawn", "none") ? [h("Div", {className: "empty", children: "No tasks in progress 暂无进行中任务"})]
        : window.dash_clientside.no_update;
    }
    const minute = Math.floor(now / 60);          // overdue turns red within a minute of its deadline
    if (!changed(st, "tasksDrawn", JSON.stringify([selected, minute, tasks.map(c => [c.key, c.state, c.handler])]))) {
      return window.dash_clientside.no_update;
    }
    return tasks.map(c => {
      const at = st.words.steps.findIndex(s => s[0] === c.state);
      const overdue = c.deadline != null && now >= c.deadline;
      return h("Button", {className: "dispatch-task queue-row" + (c.key === selected ? " selected" : "") +
                                     (overdue && c.state !== st.words.state.HANDLED ? " overdue" : ""),
                          id: {type: "dispatch-task", case: c.key}, n_clicks: 0, children: [
        h("Span", {className: "row-title", children: (c.handler || "?") + " · " +
                                                     (c.title || L.label(st, "category", c.category))}),
        h("Span", {className: "task-steps", children: st.words.steps.map((s, i) => h("Span", {
          className: "task-step" + (i < at ? " done" : i === at ? " now" : ""), children: s[1]}))}),
        h("Span", {className: "row-time countdown" + (overdue ? " overdue" : ""), id: "dispatch-task-left-" + c.key,
                   children: taskLeft(st, c, now)})]});
    });
  }

  function taskLeft(st, c, now) {
    const left = c.state === st.words.state.HANDLED ? gcc.live.label(st, "case_stage", "verify")
      : c.deadline == null ? ""
      : now >= c.deadline ? "+" + gcc.ui.span(now - c.deadline) + " 超期" : gcc.ui.span(c.deadline - now);
    return left + (c.since ? " · " + gcc.ui.age(c.since) : "");
  }

  function queueLeft(c, now) {
    return c.deadline == null ? "" : c.deadline >= now ? gcc.ui.span(c.deadline - now)
                                                       : "+" + gcc.ui.span(now - c.deadline) + " 超期";
  }

  /* Redrawn rows are new DOM nodes (Dash remounts them), and a click half-way through a redraw is
   * lost: the lists are redrawn only when what they show changes; the clocks tick in place. */
  function changed(st, name, signature) {
    if (st[name] === signature) return false;
    st[name] = signature;
    return true;
  }

  function tickClocks(st) {
    const now = Date.now() / 1000;
    st.order.forEach(key => {
      const c = st.cases.get(key), el = document.getElementById("dispatch-left-" + key);
      if (c && el) el.textContent = queueLeft(c, now);
    });
    st.tasks.forEach((c, key) => {
      const el = document.getElementById("dispatch-task-left-" + key);
      if (el) el.textContent = taskLeft(st, c, now);
    });
  }

  function alarmRows(st) {
    const h = gcc.ui.html, L = gcc.live;
    if (st.alarmsDrawn === st.alarmsVersion) return window.dash_clientside.no_update;
    st.alarmsDrawn = st.alarmsVersion;
    const all = [...st.alarms.values()].sort((a, b) => (b.severity - a.severity) || (a.t - b.t));
    if (!all.length) return [h("Div", {className: "empty", children: "No open alarms 暂无告警"})];
    const alarms = all.slice(0, ALARMS_SHOWN);     // the most severe, oldest first: a screenful, redrawn cheaply
    const more = all.length - alarms.length;
    const tail = more > 0 ? [h("Div", {className: "empty", id: "dispatch-alarms-more",
                                        children: "+" + more + " more open alarms 另有 " + more + " 条告警"})] : [];
    return alarms.map(a => h("Div", {className: "queue-row sev-" + a.severity, id: "dispatch-alarm-" + a.key, children: [
      h("Span", {className: "sev-dot", style: {background: L.colour(st, "severity", a.severity)}}),
      h("Span", {className: "row-title", children: L.label(st, "alarm_type", a.alarm_type)}),
      h("Span", {className: "row-where", children: a.where || a.grid_code}),
      h("Span", {className: "row-time", children: gcc.ui.age(a.t)}),
      a.acknowledged_by
        ? h("Span", {className: "acked-by", children: "✓ " + a.acknowledged_by})
        : h("Button", {className: "ack-button", id: {type: "dispatch-ack", alarm: a.alarm_id, sensor: a.sensor_id},
                       children: L.label(st, "action", st.words.action.ALARM_ACKNOWLEDGE), n_clicks: 0}),
    ]})).concat(tail);
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

  /* The queue: unassigned (offers ran out) and SOS first, then overdue, urgent, by time left. */
  function queueOrder(st, now) {
    const rank = c => (c.unassigned ? 0 : 8) + (c.source === "sos" ? 0 : 4) +
                      (c.deadline != null && now >= c.deadline ? 0 : 2) + (c.urgency === "urgent" ? 0 : 1);
    return [...st.cases.values()].sort((a, b) => (rank(a) - rank(b)) || ((a.deadline || 9e12) - (b.deadline || 9e12)));
  }

  function queueRows(st, selected) {
    const h = gcc.ui.html, L = gcc.live;
    const now = Date.now() / 1000;
    const all = queueOrder(st, now);
    // the most pressing first, a screenful of them: hundreds of rows redrawn every second would
    // make the whole console slow; the chosen case stays listed wherever it ranks
    const cases = all.slice(0, QUEUE_SHOWN);
    const chosen = all.find(c => c.key === selected);
    if (chosen && !cases.includes(chosen)) cases.push(chosen);
    st.order = cases.map(c => c.key);
    if (!cases.length) {
      return changed(st, "queueDrawn", "none") ? [h("Div", {className: "empty", children: "Nothing to dispatch 暂无待派遣"})]
        : window.dash_clientside.no_update;
    }
    const more = all.length - cases.length;
    const minute = Math.floor(now / 60);
    if (!changed(st, "queueDrawn", JSON.stringify([selected, more, minute, cases.map(c => [c.key, c.state, c.handler,
                                                                                           c.unassigned])]))) {
      return window.dash_clientside.no_update;
    }
    return cases.map(c => {
      const left = queueLeft(c, now);
      const phase = c.deadline != null && now >= c.deadline ? " overdue" : c.warn_at != null && now >= c.warn_at
        ? " warning" : "";
      const auto = st.automatic.has(c.category) && !c.unassigned;
      const waits = c.unassigned ? "unassigned 未派出" : c.state === st.words.state.DISPATCHED
        ? "offered to " + (c.handler || "?") + " 待接单"
        : c.state === st.words.state.REGISTERED && auto ? "automatic 自动派遣中" : st.words.queue[c.state];
      return h("Button", {className: "dispatch-case queue-row" + (c.key === selected ? " selected" : "") +
                                     (c.unassigned ? " unassigned" : "") + (c.source === "sos" ? " sos" : "") + phase,
                          id: {type: "dispatch-case", case: c.key}, n_clicks: 0, children: [
        h("Span", {className: "row-kind", children: c.urgency === "urgent" || c.source === "sos"
          ? (c.source === "sos" ? "SOS" : "urgent 紧急") : ""}),
        h("Span", {className: "row-title", children: c.title || L.label(st, "category", c.category)}),
        h("Span", {className: "row-where", children: (c.where || "") + " · " + waits}),
        h("Span", {className: "row-time countdown" + phase, id: "dispatch-left-" + c.key, children: left})]});
    }).concat(more > 0 ? [h("Div", {className: "empty", id: "dispatch-queue-more",
                                   children: "+" + more + " more waiting, less pressing 另有 " + more + " 件"})] : []);
  }

  /* Answers on the terminals' generic task channel (…/task/ack; a case's offer is answered on …/case). */
  function ackRows(st) {
    const h = gcc.ui.html, L = gcc.live;
    if (!st.acks.length) return [];
    return st.acks.map(a => h("Div", {className: "ticker-row", children: [
      h("Span", {className: "row-kind", children: L.label(st, "task_action", a.action)}),
      h("Span", {className: "row-title", children: a.name}),
      h("Span", {className: "row-where", children: a.task_id}),
      h("Span", {className: "row-time", children: gcc.ui.clock(a.t)})]}));
  }

  /* The keyboard: ↑/↓ choose a case in the queue, Enter offers it to candidate 1, a digit to
   * candidate N (their buttons, so the server decides as for a click), Esc lets go. Not while typing. */
  document.addEventListener("keydown", e => {
    if (!document.getElementById("dispatch") || /INPUT|TEXTAREA|SELECT/.test((e.target || {}).tagName || "")) return;
    const st = gcc.live.state("dispatch");
    if (!st) return;
    const set = value => window.dash_clientside.set_props("dispatch-selected", {data: value});
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      if (!st.order.length) return;
      const at = st.order.indexOf(st.selected);
      const next = at < 0 ? 0 : Math.max(0, Math.min(st.order.length - 1, at + (e.key === "ArrowDown" ? 1 : -1)));
      set(st.order[next]);
      e.preventDefault();
    } else if (e.key === "Escape") {
      set(null);
    } else if (e.key === "Enter" || /^[1-9]$/.test(e.key)) {
      const n = e.key === "Enter" ? 1 : Number(e.key);
      const button = document.querySelector("#dispatch-cand-" + n + " .dispatch-offer-button") ||
                     (n === 1 ? document.querySelector(".dispatch-register") : null);
      if (button && !button.disabled) { button.click(); e.preventDefault(); }
    }
  });

  /* dash-leaflet functions, referenced from Python as Namespace("gcc", "dispatch") */
  const STATUS_COLOURS = {available: "#30d158", requested: "#ffd60a", en_route: "#ff9f0a", on_scene: "#bf5af2",
                          handler: "#64d2ff"};   // the chosen case's handler, on the way or on scene
  gcc.dispatch = {
    gridStyle: function () { return {color: "#4a6a8a", weight: 1, fillColor: "#1c2a3a", fillOpacity: 0.3}; },
    candidateMarker: function (feature, latlng) {
      const p = feature.properties;
      if (p.kind === "case") {
        const icon = L.divIcon({className: "case-icon overdue", html: "<span></span>", iconSize: [28, 28]});
        return gcc.ui.textTooltip(L.marker(latlng, {icon: icon, zIndexOffset: 1000}), p.label);
      }
      const badge = gcc.ui.text(p.n);               // the icon is built as a node too: nothing of the data is HTML
      badge.style.background = STATUS_COLOURS[p.kind] || "#8b9bb0";
      const icon = L.divIcon({className: "cand-icon", iconSize: [24, 24], html: badge});
      return gcc.ui.textTooltip(L.marker(latlng, {icon: icon}), p.label);
    },
  };

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    gcc: Object.assign({}, (window.dash_clientside || {}).gcc, {
      dispatchLive: function (snapshot, frame, ticks, selected, url) {
        const trigger = (window.dash_clientside.callback_context.triggered || [])[0] || {};
        const onlyTime = trigger.prop_id === "dispatch-clock.n_intervals";
        const reconnect = onlyTime ? window.dash_clientside.no_update : gcc.live.receive("dispatch", snapshot, frame, url);
        const st = gcc.live.state("dispatch");
        const noUpdate = window.dash_clientside.no_update;
        if (!st) return Array(5).fill(noUpdate).concat([reconnect]);
        st.selected = selected;
        if (onlyTime) {
          const out = [noUpdate, noUpdate, noUpdate, queueRows(st, selected), taskRows(st, selected), noUpdate];
          tickClocks(st);                              // the rows not redrawn: their clocks in place
          return out;
        }
        return [alarmRows(st), memberSummary(st), ackRows(st), queueRows(st, selected), taskRows(st, selected),
                reconnect];
      },
      dispatchChoose: function (clicks, taskClicks) {
        const id = window.dash_clientside.callback_context.triggered_id;
        const any = (clicks || []).concat(taskClicks || []).some(n => n);
        return id && any ? id.case : window.dash_clientside.no_update;
      },
    }),
  });
})();
