/* Track replay (dashboard/pages/replay.py): the player. The track arrives once (offsets in seconds
 * from its first fix, and coordinates); a tick every 100 ms while playing moves the clock on by the
 * time passed × the speed, and the marker to where the member was then (between two fixes, on the
 * line between them). The slider sets the clock; follow mode keeps the marker in the map's centre. */
(function () {
  const CITY_OFFSET_MS = 8 * 3600 * 1000;      // the city's time (China Standard Time, no DST)
  const PLAY = "▶ 播放", PAUSE = "■ 暂停";

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
    const d = new Date(track.t0 + t * 1000 + CITY_OFFSET_MS);
    return d.toISOString().slice(11, 19);
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    gcc: Object.assign({}, (window.dash_clientside || {}).gcc, {
      replayTick: function (_n, _play, speed, slider, track, clock, follow) {
        const no = window.dash_clientside.no_update;
        const trig = (window.dash_clientside.callback_context.triggered[0] || {}).prop_id || "";
        const now = performance.now();
        clock = Object.assign({t: 0, playing: false, speed: 1}, clock || {});
        if (!track || !track.ts || !track.ts.length) {
          return [no, 0, 0, "–", {t: 0, playing: false, speed: speed || 1}, PLAY, true, no,
                  trig.startsWith("replay-track.") ? [] : no];
        }
        const end = track.ts[track.ts.length - 1];
        let fromSlider = false;
        if (trig.startsWith("replay-track.")) {
          clock = {t: 0, playing: false, speed: speed || 1, wall: now};
        } else if (trig.startsWith("replay-play.")) {
          if (!clock.playing && clock.t >= end) clock.t = 0;
          clock.playing = !clock.playing;
          clock.wall = now;
        } else if (trig.startsWith("replay-speed.")) {
          clock.speed = speed || 1;
          clock.wall = now;
        } else if (trig.startsWith("replay-slider.")) {
          if (Math.abs((slider || 0) - clock.t) > 0.5) { clock.t = slider || 0; fromSlider = true; }
          clock.wall = now;
        } else if (clock.playing) {
          clock.t += (now - (clock.wall || now)) / 1000 * (clock.speed || 1);
          clock.wall = now;
          if (clock.t >= end) { clock.t = end; clock.playing = false; }
        }
        const at = where(track, clock.t);
        const followOn = (follow || []).indexOf("on") >= 0;
        let view = followOn && (clock.playing || fromSlider) ? {center: at, transition: "panTo"} : no;
        let line = no;
        if (trig.startsWith("replay-track.")) {
          view = {bounds: extent(track), transition: "fitBounds"};
          line = track.lat.map(function (lat, i) { return [lat, track.lon[i]]; });   // drawn once, here
        }
        return [at, 1, fromSlider ? no : Math.round(clock.t), clockText(track, clock.t), clock,
                clock.playing ? PAUSE : PLAY, !clock.playing, view, line];
      },
    }),
  });
})();
