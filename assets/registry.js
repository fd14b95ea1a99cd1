/* The registry's pages (dashboard/pages/members.py, gateways.py): a row's button picks what the
 * editor below shows; the pattern id's second key names it (member, gateway, sensor). */
(function () {
  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    gcc: Object.assign({}, (window.dash_clientside || {}).gcc, {
      registryPick: function (clicks) {
        const id = window.dash_clientside.callback_context.triggered_id;
        if (!id || !(clicks || []).some(n => n)) return window.dash_clientside.no_update;
        return id.member || id.gateway || id.sensor;
      },
    }),
  });
})();
