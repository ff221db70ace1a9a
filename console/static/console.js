// Postern console: copy buttons and the servers filter. Everything works
// without this script; it only saves typing.
"use strict";
document.addEventListener("click", function (e) {
  var b = e.target.closest("[data-copy]");
  if (!b) return;
  var el = document.getElementById(b.getAttribute("data-copy"));
  if (!el || !navigator.clipboard) return;
  navigator.clipboard.writeText(el.textContent.trim()).then(function () {
    var was = b.textContent;
    b.textContent = "Copied";
    setTimeout(function () { b.textContent = was; }, 1500);
  });
});
document.addEventListener("change", function (e) {
  // A colour picked from the list is saved at once.
  if (e.target.matches("select[data-autosubmit]")) e.target.form.submit();
});
var filter = document.getElementById("filter");
if (filter) {
  filter.addEventListener("input", function () {
    var q = filter.value.trim().toLowerCase();
    document.querySelectorAll("tr[data-server-id]").forEach(function (row) {
      row.classList.toggle("hidden", q !== "" && row.getAttribute("data-name").indexOf(q) < 0);
    });
  });
}
document.querySelectorAll("[data-js-only]").forEach(function (el) { el.classList.remove("hidden"); });
document.querySelectorAll("[data-no-js]").forEach(function (el) { el.classList.add("hidden"); });
