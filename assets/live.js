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
 * `scope`, `seq`, `vocabulary` and `frames` (set here). */
(function () {
  const gcc = window.gcc = window.gcc || {};
  gcc.renderers = gcc.renderers || {};
  const feeds = {};
  const RECENT_FRAMES = 20;

  function feedOf(name) {
    return feeds[name] = feeds[name] || {name: name, recent: [], resyncs: 0, state: null};
  }
  function rendererOf(feed) { return gcc.renderers[feed.name]; }

  function applySnapshot(feed, s) {
    const st = rendererOf(feed).fresh(s);
    st.scope = s.scope;
    st.seq = s.seq;
    st.vocabulary = s.vocabulary || {labels: {}, colours: {}};
    st.frames = 0;
    feed.state = st;
    // frames of this scope that overtook the snapshot on their way here, newer than it: apply them now
    feed.recent.filter(f => f.scope === st.scope && f.seq > st.seq)
      .sort((a, b) => a.seq - b.seq).forEach(f => takeFrame(feed, f, false));
  }

  /* Frames are numbered per room; the snapshot says which number it is current to. A frame is
   * applied once and in order; a gap (a frame lost in between) asks for a resync. */
  function takeFrame(feed, f, remember) {
    if (remember) feed.recent = feed.recent.concat([f]).slice(-RECENT_FRAMES);
    const st = feed.state;
    if (!st || f.scope !== st.scope) return "skip";           // no snapshot yet, or a straggler of the previous scope
    if (st.seq === null || f.seq <= st.seq) return "skip";   // before the snapshot, or already in it
    if (f.seq > st.seq + 1) return "gap";
    st.seq = f.seq;
    rendererOf(feed).frame(st, f);
    st.frames += 1;
    st.lastFrameAt = Date.now();
    return "applied";
  }

  gcc.live = {
    state: function (name) { return feeds[name] ? feeds[name].state : null; },
    resyncs: function (name) { return feeds[name] ? feeds[name].resyncs : 0; },
    /* What a page's clientside callback hands over; returns the socket URL (changed: resync). */
    receive: function (name, snapshot, frame, url) {
      const feed = feedOf(name);
      const noUpdate = window.dash_clientside.no_update;
      const trig = (window.dash_clientside.callback_context.triggered || []).map(t => t.prop_id);
      if (trig.some(p => p.endsWith("data-snapshot")) && snapshot) {
        applySnapshot(feed, snapshot);
      } else if (trig.some(p => p.endsWith("data-frame")) && frame) {
        if (takeFrame(feed, frame, true) === "gap") {
          feed.resyncs += 1;   // a new URL makes the component reconnect: the server sends a snapshot
          return url.replace(/&resync=\d+$/, "") + "&resync=" + feed.resyncs;
        }
      }
      return noUpdate;
    },
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
  gcc.ui = {
    html: function (type, props) { return {namespace: "dash_html_components", type: type, props: props}; },
    age: function (t) {
      const s = Math.max(0, Date.now() / 1000 - t);
      if (s < 60) return Math.round(s) + " s";
      if (s < 3600) return Math.round(s / 60) + " min";
      return (s / 3600).toFixed(1) + " h";
    },
    clock: function (t) { return new Date(t * 1000).toLocaleTimeString("en-GB", {hour12: false}); },
  };

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    gcc: Object.assign({}, (window.dash_clientside || {}).gcc, {
      connection: function (connected) {
        return connected ? ["live 实时", "wall-conn live"] : ["reconnecting… 重连中", "wall-conn down"];
      },
    }),
  });
})();
