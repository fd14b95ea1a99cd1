/* The case list (dashboard/pages/cases.py) and a case's page (dashboard/pages/case.py), live.
 *
 * Their feeds carry the numbers of the cases that changed (the list: in its scope; a case's page:
 * in the case's org unit). The rows and the case come from the server, authorized there: a frame
 * that names a case the page shows bumps a number (`cases-pushed`, `case-pushed`), and the server
 * draws them again. A snapshot (a connect, a reconnect, a resync) bumps it too: frames may have
 * been missed meanwhile.
 *
 * Between two drawings a running clock moves on here, every second: each element with
 * `data-deadline` (epoch seconds) shows the time left as the server words it (cases.duration:
 * "3 d 4 h", "2 h 05 min", "12 min", "4 min 07 s"; past it, "… overdue 超时"), and its row or clock
 * box turns amber at `data-warn` and red at the deadline. The text node React drew is changed in
 * place (never replaced), so React's next drawing finds its own node. */
(function () {
  const gcc = window.gcc = window.gcc || {};
  gcc.renderers = gcc.renderers || {};
  const bumps = {cases: 0, case: 0};

  function changed(f) { return ((f.changes || {}).case || []); }
  function shownCase() {
    const m = window.location.pathname.match(/^\/case\/([^/]+)/);
    return m ? decodeURIComponent(m[1]) : null;
  }

  gcc.renderers.cases = {
    fresh: function () { bumps.cases += 1; return {}; },
    frame: function (st, f) { if (changed(f).length) bumps.cases += 1; },
  };
  gcc.renderers.case = {
    fresh: function () { bumps.case += 1; return {}; },
    frame: function (st, f) {
      const id = shownCase();
      if (changed(f).some(c => c.key === id)) bumps.case += 1;
    },
  };

  function live(name) {
    return function (snapshot, frame, url) {
      const before = bumps[name];
      const reconnect = gcc.live.receive(name, snapshot, frame, url);
      return [bumps[name] !== before ? bumps[name] : window.dash_clientside.no_update, reconnect];
    };
  }

  /* The words of cases.duration (dashboard/pages/cases.py). */
  function duration(seconds) {
    seconds = Math.trunc(Math.abs(seconds));
    const days = Math.floor(seconds / 86400), hours = Math.floor(seconds % 86400 / 3600);
    const minutes = Math.floor(seconds % 3600 / 60), secs = seconds % 60;
    if (days) return days + " d " + hours + " h";
    if (hours) return hours + " h " + String(minutes).padStart(2, "0") + " min";
    return minutes < 10 ? minutes + " min " + String(secs).padStart(2, "0") + " s" : minutes + " min";
  }

  const CLOCK_CLASSES = ["case-ok", "case-warn", "case-overdue"];

  function tick() {
    const now = Date.now() / 1000;
    document.querySelectorAll("#cases [data-deadline], #case [data-deadline]").forEach(el => {
      const deadline = parseFloat(el.dataset.deadline), warn = parseFloat(el.dataset.warn);
      if (isNaN(deadline)) return;
      const left = deadline - now;
      const text = left < 0 ? duration(-left) + " " + (el.dataset.overdue || "overdue") : duration(left);
      const node = el.firstChild;
      if (node && node.nodeType === Node.TEXT_NODE) {
        if (node.nodeValue !== text) node.nodeValue = text;
      }
      const box = el.closest(".cases-row, .case-clock");
      if (box) {
        const wanted = left < 0 ? "case-overdue" : (!isNaN(warn) && warn <= now ? "case-warn" : "case-ok");
        if (!box.classList.contains(wanted)) {
          CLOCK_CLASSES.forEach(c => box.classList.remove(c));
          box.classList.add(wanted);
        }
      }
    });
  }
  setInterval(tick, 1000);

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    gcc: Object.assign({}, (window.dash_clientside || {}).gcc, {
      casesLive: live("cases"),
      caseLive: live("case"),
    }),
  });
})();
