/* The KPI ranking (dashboard/pages/kpis.py): a click anywhere on a row follows the row's own
 * drill-down link (the server authorizes the unit it opens, as for any link). */
document.addEventListener("click", function (event) {
  const row = event.target.closest && event.target.closest("tr.kpis-rank-row");
  if (!row || event.target.closest("a, button")) return;
  const link = row.querySelector("a.kpis-drill");
  if (link) link.click();
});
