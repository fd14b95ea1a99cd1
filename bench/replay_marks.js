(fixes) => {
  /* The replay benchmark's marks in the page (bench/replay_bench.py): the click's own event time,
   * and the frame after the change is on screen (a change seen, then two animation frames: the one
   * that paints it has passed). Ready also waits for the track's line: Leaflet strokes it on the
   * map's canvas (simplified to the pixels, but still hundreds of points: nothing else on the map is
   * a path of 50). Evaluated with the track's number of fixes; leaves window.marks.{ready,moving}. */
  const marks = window.marks = {};
  const painted = (key) => requestAnimationFrame(() => requestAnimationFrame(() => { marks[key] = performance.now(); }));
  const ctx = CanvasRenderingContext2D.prototype;
  if (!ctx.gccWrapped) {
    ctx.gccWrapped = true;
    const [begin, lineTo, stroke] = [ctx.beginPath, ctx.lineTo, ctx.stroke];
    ctx.beginPath = function () { this.gccPoints = 0; return begin.apply(this, arguments); };
    ctx.lineTo = function () { this.gccPoints = (this.gccPoints || 0) + 1; return lineTo.apply(this, arguments); };
    ctx.stroke = function () {
      const drawn = stroke.apply(this, arguments);
      if (window.marks && this.gccPoints >= 50) { window.marks.lineStroked = true; window.marksCheck(); }
      return drawn;
    };
  }
  document.addEventListener("click", (e) => {
    if (e.target.closest("#replay-load")) marks.load = e.timeStamp;
    if (e.target.closest("#replay-play")) {
      marks.play = e.timeStamp;
      marks.before = document.querySelector("#replay-time").innerText;
    }
  }, true);
  const check = window.marksCheck = () => {
    const play = document.querySelector("#replay-play"), status = document.querySelector("#replay-status");
    if (!marks.readySeen && marks.load && marks.lineStroked && !play.disabled
        && status.innerText.includes(fixes.toLocaleString("en"))) {
      marks.readySeen = true; painted("ready");
    }
    if (!marks.movingSeen && marks.play && document.querySelector("#replay-time").innerText !== marks.before) {
      marks.movingSeen = true; painted("moving");
    }
  };
  new MutationObserver(check).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
}
