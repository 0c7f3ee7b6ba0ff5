// Click a header of a table.sortable to sort its rows (numbers numerically, text alphabetically).
(function () {
  "use strict";
  function cellKey(row, index) {
    var cell = row.cells[index];
    if (!cell) { return ""; }
    var raw = cell.getAttribute("data-sort");
    if (raw === null) { raw = cell.textContent.trim(); }
    var num = parseFloat(raw);
    return (raw !== "" && !isNaN(num) && isFinite(num) && /^[-+0-9.eE]+$/.test(raw)) ? num : raw.toLowerCase();
  }
  function compare(a, b) {
    var na = typeof a === "number", nb = typeof b === "number";
    if (na && nb) { return a - b; }
    if (na) { return -1; }
    if (nb) { return 1; }
    return a < b ? -1 : (a > b ? 1 : 0);
  }
  function sortBy(table, th, index) {
    var body = table.tBodies[0];
    if (!body) { return; }
    var asc = !th.classList.contains("sorted-asc");
    var headers = table.querySelectorAll("th");
    for (var i = 0; i < headers.length; i++) { headers[i].classList.remove("sorted-asc", "sorted-desc"); }
    th.classList.add(asc ? "sorted-asc" : "sorted-desc");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var c = compare(cellKey(r1, index), cellKey(r2, index));
      return asc ? c : -c;
    });
    for (var j = 0; j < rows.length; j++) { body.appendChild(rows[j]); }
  }
  function init() {
    var tables = document.querySelectorAll("table.sortable");
    for (var t = 0; t < tables.length; t++) {
      (function (table) {
        var head = table.tHead;
        if (!head || !head.rows.length) { return; }
        var cells = head.rows[head.rows.length - 1].cells;
        for (var i = 0; i < cells.length; i++) {
          (function (th, index) {
            th.setAttribute("title", "sort");
            th.addEventListener("click", function () { sortBy(table, th, index); });
          })(cells[i], i);
        }
      })(tables[t]);
    }
    document.body.setAttribute("data-sortable-ready", String(tables.length));
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
