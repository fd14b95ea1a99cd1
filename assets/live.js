/* The browser side of every live feed (dashboard/feeds.py, dashboard/hub.py), shared by the pages:
 * it keeps each feed's state, applies a snapshot, applies numbered frames once and in order, and
 * asks for a resync (a fresh snapshot) when a frame is missing. A page's script puts its renderer
 * in gcc.renderers (any load order):
 *
 *   gcc.renderers.wall = {
 *     fresh(snapshot)        -> a new state object built from a snapshot
 *     frame(state, frame)    apply one frame's changes ({kind: [...]}) to the state
 *   }
 *
 * and its clientside callback calls gcc.live.receive(name, snapshot, frame, url), which returns
 * the socket URL to reconnect to (a resync) or no_update. A renderer's state also carries
 * `scope`, `boot`, `seq`, `vocabulary` and `frames` (set here).
 *
 * Between asking for a snapshot (a gap, a lost connection) and receiving it a feed is "waiting":
 * frames are kept, not applied, and no second resync is asked for; the snapshot then applies the
 * kept frames that are newer than it and come from the same start of the server (`boot`). */
(function () {
  const gcc = window.gcc = window.gcc || {};
  gcc.renderers = gcc.renderers || {};
  const feeds = {};
  const RECENT_FRAMES = 50;

  function feedOf(name) {
    return feeds[name] = feeds[name] || {name: name, recent: [], resyncs: 0, state: null, waiting: true};
  }
  function rendererOf(feed) { return gcc.renderers[feed.name]; }

  function applySnapshot(feed, s) {
    const st = rendererOf(feed).fresh(s);
    st.scope = s.scope;
    st.boot = s.boot;
    st.seq = s.seq;
    st.vocabulary = s.vocabulary || {labels: {}, colours: {}};
    st.frames = 0;
    feed.state = st;
    feed.waiting = false;
    // frames of this scope and server start that overtook the snapshot on their way here: apply them
    const kept = feed.recent.filter(f => f.scope === st.scope && f.boot === st.boot && f.seq > st.seq)
      .sort((a, b) => a.seq - b.seq);
    feed.recent = [];
    // a frame missing among the kept ones is a gap again: "gap" asks the caller for another resync
    return kept.map(f => takeFrame(feed, f)).includes("gap") ? "gap" : "applied";
  }

  function resync(feed, url) {
    feed.resyncs += 1;   // a new URL makes the component reconnect: the server sends a snapshot
    return url.replace(/&resync=\d+$/, "") + "&resync=" + feed.resyncs;
  }

  /* Frames are numbered per room and per server start; the snapshot says which number it is current
   * to. A frame is applied once and in order; a gap (a frame lost in between) asks for a resync. */
  function takeFrame(feed, f) {
    const st = feed.state;
    if (feed.waiting || !st) {                                 // until the snapshot: keep, do not apply
      feed.recent = feed.recent.concat([f]).slice(-RECENT_FRAMES);
      return "kept";
    }
    if (f.scope !== st.scope || f.boot !== st.boot) return "skip";   // another scope, another server start
    if (f.seq <= st.seq) return "skip";                      // before the snapshot, or already in it
    if (f.seq > st.seq + 1) {
      feed.waiting = true;
      feed.recent = [f];
      return "gap";
    }
    st.seq = f.seq;
    rendererOf(feed).frame(st, f);
    st.frames += 1;
    st.lastFrameAt = Date.now();
    return "applied";
  }

  gcc.live = {
    state: function (name) { return feeds[name] ? feeds[name].state : null; },
    resyncs: function (name) { return feeds[name] ? feeds[name].resyncs : 0; },
    waiting: function (name) { return feedOf(name).waiting; },
    /* What a page's clientside callback hands over; returns the socket URL (changed: resync). */
    receive: function (name, snapshot, frame, url) {
      const feed = feedOf(name);
      const trig = (window.dash_clientside.callback_context.triggered || []).map(t => t.prop_id);
      let outcome = null;
      if (trig.some(p => p.endsWith("data-snapshot")) && snapshot) outcome = applySnapshot(feed, snapshot);
      else if (trig.some(p => p.endsWith("data-frame")) && frame) outcome = takeFrame(feed, frame);
      return outcome === "gap" ? resync(feed, url) : window.dash_clientside.no_update;
    },
    /* The socket went away: every feed waits for the snapshot the server sends on reconnecting. */
    disconnected: function () { Object.values(feeds).forEach(feed => { feed.waiting = true; }); },
    /* Labels and colours from the snapshot's vocabulary (dashboard/vocabulary.py). */
    label: function (st, group, key) {
      const labels = ((st && st.vocabulary && st.vocabulary.labels) || {})[group] || {};
      return labels[key] || String(key == null ? "" : key).replace(/_/g, " ");
    },
    colour: function (st, group, key, fallback) {
      const colours = ((st && st.vocabulary && st.vocabulary.colours) || {})[group] || {};
      return colours[key] || fallback || "#8e8e93";
    },
  };

  /* Small helpers the renderers share. */
  // A lost connection may be a session that ended (logout elsewhere, expiry, a revoked wall
  // token): the server then refuses every reconnect, so say so instead of "reconnecting" forever.
  // One request per lost connection, never a poll.
  gcc.live.checkSession = function () {
    fetch("/_dash-layout", {method: "HEAD", credentials: "same-origin", cache: "no-store"}).then(r => {
      if (r.status !== 401) return;
      const kiosk = document.querySelector(".kiosk") !== null;
      document.querySelectorAll(".wall-conn").forEach(el => {
        el.className = "wall-conn down";
        el.textContent = kiosk ? "signed out: open this screen's wall link again 已退出：请重新打开大屏链接"
                               : "signed out 已退出";
      });
      if (!kiosk) window.location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
    }).catch(() => {});
  };

  gcc.ui = {
    html: function (type, props) { return {namespace: "dash_html_components", type: type, props: props}; },
    /* Leaflet takes a tooltip's or a popup's string as HTML: what it shows (names, titles, labels:
     * data that came from elsewhere) goes in as a text node, so markup in it is shown, never run. */
    text: function (value) {
      const el = document.createElement("span");
      el.textContent = value == null ? "" : String(value);
      return el;
    },
    /* `layer` with a tooltip that shows `value` as text (a text node, set by textContent): the one
     * way a map's marker gets a tooltip, on every screen. */
    textTooltip: function (layer, value) { return layer.bindTooltip(gcc.ui.text(value)); },
    age: function (t) {
      const s = Math.max(0, Date.now() / 1000 - t);
      if (s < 60) return Math.round(s) + " s";
      if (s < 3600) return Math.round(s / 60) + " min";
      return (s / 3600).toFixed(1) + " h";
    },
    clock: function (t) { return new Date(t * 1000).toLocaleTimeString("en-GB", {hour12: false}); },
    /* How long a span of seconds is, as a countdown reads it: 4:05, 1 h 20 min, 2 d 3 h. */
    span: function (s) {
      s = Math.max(0, Math.round(s));
      if (s < 3600) return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
      if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
      return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
    },
  };

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    gcc: Object.assign({}, (window.dash_clientside || {}).gcc, {
      connection: function (connected) {
        if (!connected) {
          gcc.live.disconnected();
          gcc.live.checkSession();
        }
        return connected ? ["live 实时", "wall-conn live"] : ["reconnecting… 重连中", "wall-conn down"];
      },
    }),
  });
})();
