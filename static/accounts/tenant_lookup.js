// The app registration page's "Look up the tenant id": the domain typed in Tenant
// is sent to the admin's tenant-lookup endpoint, and the GUID it finds replaces it.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("tenant-lookup");
    var result = document.getElementById("tenant-lookup-result");
    var tenant = document.getElementById("id_tenant");
    var authority = document.getElementById("id_authority");
    if (!button || !result || !tenant || !window.fetch) {
      return;
    }
    button.addEventListener("click", function () {
      var query = new URLSearchParams({
        domain: tenant.value,
        authority: authority ? authority.value : ""
      });
      result.className = "";
      result.textContent = "Looking up " + tenant.value + "…";
      fetch(button.getAttribute("data-url") + "?" + query.toString(), {
        credentials: "same-origin",
        redirect: "manual"
      })
        .then(function (response) {
          if (!response.ok) {
            throw new Error(response.status ? "HTTP " + response.status : "logged out?");
          }
          return response.json();
        })
        .then(function (answer) {
          if (answer.tenant_id) {
            tenant.value = answer.tenant_id;
            result.className = "status status-ok";
            result.textContent = answer.message;
          } else {
            result.className = "status status-failed";
            result.textContent = answer.error + (answer.hint ? " " + answer.hint : "");
          }
        })
        .catch(function (error) {
          result.className = "status status-failed";
          result.textContent = "The lookup failed (" + error.message + ").";
        });
    });
  });
})();
