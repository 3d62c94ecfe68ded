// The test console streams its steps, then the result below them. Once the page
// is complete (this script is deferred), the outcome moves above the steps, where
// a reader looks first. Without JavaScript the page is whole: the outcome follows
// the steps.
(function () {
  "use strict";
  var outcome = document.getElementById("outcome");
  var slot = document.getElementById("outcome-slot");
  var page = document.getElementById("console");
  if (outcome && slot) {
    slot.appendChild(outcome);
  }
  if (outcome && page) {
    page.setAttribute("data-outcome", outcome.getAttribute("data-outcome"));
  }
})();
