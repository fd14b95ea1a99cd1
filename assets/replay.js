/* Track replay (dashboard/pages/replay.py): the player. The track arrives once (offsets in seconds
 * from its first fix, and coordinates). A clientside callback takes the discrete things (a new
 * track, play/pause, the speed, the slider dragged, follow); while playing, the browser's own
 * animation frames move the clock on by the time passed × the speed and put the marker where the
 * member was then (between two fixes, on the line between them), through set_props: the first
 * frame comes ~16 ms after the click, not after a server round or an interval's first tick. The
 * slider and the map's pan follow at a few times a second, the marker at every frame. */
(function () {
  const CITY_OFFSET_MS = 8 * 3600 * 1000;      // the city's time (China Standard Time, no DST)
  const PLAY = "▶ 播放", PAUSE = "■ 暂停";
  const SLIDER_EVERY_MS = 250, PAN_EVERY_MS = 500;
  const player = {track: null, t: 0, playing: false, speed: 1, follow: true, wall: 0, frame: 0,
                  text: "", sliderAt: 0, panAt: 0};

  function extent(track) {
    let s = 90, w = 180, n = -90, e = -180;
    for (let i = 0; i < track.lat.length; i++) {
      s = Math.min(s, track.lat[i]); n = Math.max(n, track.lat[i]);
      w = Math.min(w, track.lon[i]); e = Math.max(e, track.lon[i]);
    }
    return [[s - 0.0005, w - 0.0005], [n + 0.0005, e + 0.0005]];
  }

  function where(track, t) {
    const ts = track.ts;
    let lo = 0, hi = ts.length - 1;
    if (t <= ts[0]) return [track.lat[0], track.lon[0]];
    if (t >= ts[hi]) return [track.lat[hi], track.lon[hi]];
    while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (ts[mid] <= t) lo = mid; else hi = mid; }
    const f = (t - ts[lo]) / ((ts[hi] - ts[lo]) || 1);
    return [track.lat[lo] + f * (track.lat[hi] - track.lat[lo]), track.lon[lo] + f * (track.lon[hi] - track.lon[lo])];
  }

  function clockText(track, t) {
    return new Date(track.t0 + t * 1000 + CITY_OFFSET_MS).toISOString().slice(11, 19);
  }

  function end() { return player.track.ts[player.track.ts.length - 1]; }

  /* Show the clock's moment: the marker always; the time when its text changes; the slider and
   * the pan at most every so often while playing (each is a re-render), and always when not. */
  function show(now, settled) {
    const set = window.dash_clientside.set_props, at = where(player.track, player.t);
    set("replay-marker", {center: at, opacity: 1});
    const text = clockText(player.track, player.t);
    if (text !== player.text) { player.text = text; set("replay-time", {children: text}); }
    if (settled || now - player.sliderAt >= SLIDER_EVERY_MS) {
      player.sliderAt = now;
      set("replay-slider", {value: Math.round(player.t)});
    }
    if (player.follow && (settled || now - player.panAt >= PAN_EVERY_MS)) {
      player.panAt = now;
      set("replay-map", {viewport: {center: at, transition: "panTo"}});
    }
  }

  function frame(now) {
    // left the page: stop at once, as the address changes, before the map goes (Leaflet's canvas
    // fails on a redraw asked for just before its map is removed)
    if (!location.pathname.endsWith("/replay") || !document.getElementById("replay-map")) {
      player.playing = false;
      player.track = null;
      return;
    }
    if (!player.playing || !player.track) return;
    player.t += Math.max(0, now - player.wall) / 1000 * player.speed;
    player.wall = now;
    if (player.t >= end()) {
      player.t = end();
      player.playing = false;
      window.dash_clientside.set_props("replay-play", {children: PLAY});
    }
    show(now, !player.playing);
    if (player.playing) player.frame = requestAnimationFrame(frame);
  }

  function play(on) {
    cancelAnimationFrame(player.frame);
    player.playing = on;
    player.wall = performance.now();
    if (on) player.frame = requestAnimationFrame(frame);
    else if (player.track) show(player.wall, true);         // paused: the slider says exactly where
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    gcc: Object.assign({}, (window.dash_clientside || {}).gcc, {
      replayControl: function (_play, speed, slider, track, follow) {
        const no = window.dash_clientside.no_update;
        const trig = (window.dash_clientside.callback_context.triggered[0] || {}).prop_id || "";
        player.speed = speed || 1;
        player.follow = (follow || []).indexOf("on") >= 0;
        if (!trig || trig === ".") {                              // the page (again): no track yet
          play(false);
          player.track = null;
          return [no, no, no];
        }
        if (trig.startsWith("replay-track.")) {
          play(false);
          player.track = track && track.ts && track.ts.length ? track : null;
          player.t = 0;
          player.text = "";
          if (!player.track) {                                    // refused, or no fixes: nothing to show
            window.dash_clientside.set_props("replay-marker", {opacity: 0});
            window.dash_clientside.set_props("replay-time", {children: "–"});
            return [PLAY, [], no];
          }
          show(performance.now(), true);
          return [PLAY, track.lat.map(function (lat, i) { return [lat, track.lon[i]]; }),   // drawn once, here
                  {bounds: extent(track), transition: "fitBounds"}];
        }
        if (!player.track) return [no, no, no];
        if (trig.startsWith("replay-play.")) {
          if (!player.playing && player.t >= end()) player.t = 0;
          play(!player.playing);
          return [player.playing ? PAUSE : PLAY, no, no];
        }
        if (trig.startsWith("replay-slider.") && Math.abs((slider || 0) - player.t) > 0.5) {   // dragged, not ours
          player.t = Math.min(end(), Math.max(0, slider || 0));
          player.wall = performance.now();
          if (!player.playing) show(player.wall, true);
        }
        return [no, no, no];
      },
    }),
  });
})();
