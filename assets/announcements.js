/* The announcements page (dashboard/pages/announcements.py): its feed carries the terminals' read
 * receipts. The counts themselves come from the server (only a recipient's receipt counts there):
 * every snapshot and every frame with receipts bumps a number, and the server lists the
 * announcements again. */
(function () {
  const gcc = window.gcc = window.gcc || {};
  gcc.renderers = gcc.renderers || {};
  let bumps = 0;

  gcc.renderers.announcements = {
    fresh: function () { bumps += 1; return {}; },      // a (re)connect may have missed receipts
    frame: function (st, f) { if (((f.changes || {}).read || []).length) bumps += 1; },
  };

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    gcc: Object.assign({}, (window.dash_clientside || {}).gcc, {
      announcementsLive: function (snapshot, frame, url) {
        const before = bumps;
        const reconnect = gcc.live.receive("announcements", snapshot, frame, url);
        return [bumps !== before ? bumps : window.dash_clientside.no_update, reconnect];
      },
    }),
  });
})();
