// The server form: show the fields of the chosen type only, and run "Test connection"
// in place. The form works without this script: every field shows, the form drops
// those of another type, and Test connection opens its answer on a page of its own.
(function () {
  "use strict";
  function setUp() {
    var select = document.querySelector("select.ews-server-type");
    if (!select) {
      return;
    }
    var perType = JSON.parse(select.getAttribute("data-type-fields") || "{}");
    var typed = JSON.parse(select.getAttribute("data-typed-fields") || "[]");
    var graphBase = select.getAttribute("data-graph-base-uri") || "";

    function row(name) {
      return document.querySelector(".form-row.field-" + name) ||
        (document.getElementById("id_" + name) || {closest: function () { return null; }}).closest(".form-row");
    }

    function apply(changed) {
      var wanted = perType[select.value] || typed;
      typed.forEach(function (name) {
        var element = row(name);
        if (element) {
          element.hidden = wanted.indexOf(name) < 0;
        }
      });
      // A fieldset whose rows are all hidden goes too (Authentication of an iCalendar file).
      document.querySelectorAll("fieldset.module").forEach(function (fieldset) {
        var rows = fieldset.querySelectorAll(".form-row");
        if (!rows.length) {
          return;
        }
        var shown = Array.prototype.some.call(rows, function (item) { return !item.hidden; });
        fieldset.hidden = !shown;
      });
      var base = document.getElementById("id_base_uri");
      if (changed && base && select.value === "graph" && !base.value) {
        base.value = graphBase;
      }
    }

    select.addEventListener("change", function () { apply(true); });
    apply(false);

    var button = document.querySelector("button.ews-test-connection");
    var result = document.getElementById("connection-test-result");
    if (!button || !result || !window.fetch || !window.FormData) {
      return;
    }
    button.addEventListener("click", function (event) {
      event.preventDefault();
      var form = button.form;
      var data = new FormData(form);
      button.disabled = true;
      result.textContent = "Testing…";
      fetch(button.getAttribute("formaction"), {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: {"X-Requested-With": "fetch"}
      })
        .then(function (response) {
          if (!response.ok) {
            throw new Error("HTTP " + response.status);
          }
          return response.text();
        })
        .then(function (html) { result.innerHTML = html; })
        .catch(function (error) { result.textContent = "The test could not run (" + error.message + ")."; })
        .then(function () { button.disabled = false; });
    });
  }

  // The admin puts form media in <head>: wait for the form.
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
})();
