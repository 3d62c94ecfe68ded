// Keeps /status/ current: fetch the server-rendered fragment and swap it in.
(function () {
  "use strict";
  var box = document.getElementById("status-live");
  var note = document.getElementById("status-updated");
  if (!box || !window.fetch) {
    return;
  }
  var every = (parseInt(box.getAttribute("data-interval"), 10) || 10) * 1000;
  function poll() {
    if (document.hidden) {
      return;
    }
    // redirect: "manual" so that a logged-out session does not swap in the login page.
    fetch(box.getAttribute("data-url"), {credentials: "same-origin", redirect: "manual"})
      .then(function (response) {
        if (!response.ok) {
          throw new Error(response.status ? "HTTP " + response.status : "logged out?");
        }
        return response.text();
      })
      .then(function (html) {
        box.innerHTML = html;
        note.textContent = "Updated at " + new Date().toLocaleTimeString() + ".";
      })
      .catch(function (error) {
        note.textContent = "Could not update (" + error.message + "); trying again.";
      });
  }
  setInterval(poll, every);
  document.addEventListener("visibilitychange", poll);
})();
