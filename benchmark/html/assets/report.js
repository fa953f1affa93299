// The benchmark report's only script (hand-written, no dependencies, inlined into index.html):
// sortable tables, loudness-matched playback, one player at a time.
(function () {
  "use strict";

  function sortKey(cell) {
    var value = cell ? cell.getAttribute("data-sort") : null;
    return value === null || value === "" ? null : parseFloat(value);
  }

  function compare(a, b, index) {
    var x = sortKey(a.cells[index]), y = sortKey(b.cells[index]);
    if (x !== null && y !== null) return x - y;
    if (x !== null) return -1;  // numbers before text and blanks
    if (y !== null) return 1;
    var s = a.cells[index] ? a.cells[index].textContent : "", t = b.cells[index] ? b.cells[index].textContent : "";
    return s.localeCompare(t, undefined, {numeric: true});
  }

  function sortBy(th) {
    var table = th.closest("table"), body = table.tBodies[0];
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var missingA = !a.cells[index] || a.cells[index].hasAttribute("data-missing");
      var missingB = !b.cells[index] || b.cells[index].hasAttribute("data-missing");
      if (missingA !== missingB) return missingA ? 1 : -1;  // "–" last either way
      var order = compare(a, b, index);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  document.querySelectorAll("table.sortable thead th").forEach(function (th) {
    th.tabIndex = 0;
    th.title = "sort by this column";
    th.addEventListener("click", function () { sortBy(th); });
    th.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(th); }
    });
  });

  // Loudness-matched playback: data-gain (dB, <= 0) attenuates each file to its item's quietest one.
  var toggle = document.getElementById("loudness-match");
  function applyGains() {
    document.querySelectorAll("audio[data-gain]").forEach(function (audio) {
      var gain = parseFloat(audio.getAttribute("data-gain")) || 0;
      audio.volume = toggle && toggle.checked ? Math.min(1, Math.pow(10, gain / 20)) : 1;
    });
  }
  if (toggle) { toggle.addEventListener("change", applyGains); applyGains(); }

  // Starting one player pauses the others, so that comparisons are never mixed.
  document.addEventListener("play", function (event) {
    document.querySelectorAll("audio").forEach(function (audio) { if (audio !== event.target) audio.pause(); });
  }, true);
})();
