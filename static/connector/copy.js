// Copy buttons: <button class="ews-copy" data-copy="text">. One listener on the
// document, so that buttons swapped in later (the status page) work too.
(function () {
  "use strict";
  function fallback(text) {
    // Pages served over plain HTTP on a LAN name have no navigator.clipboard.
    var box = document.createElement("textarea");
    box.value = text;
    box.setAttribute("readonly", "");
    box.style.position = "fixed";
    box.style.opacity = "0";
    document.body.appendChild(box);
    box.select();
    var done = false;
    try {
      done = document.execCommand("copy");
    } catch (error) {
      done = false;
    }
    document.body.removeChild(box);
    return done ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }
  function say(button, text) {
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    button.textContent = text;
    setTimeout(function () { button.textContent = label; }, 2000);
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.ews-copy") : null;
    if (!button) {
      return;
    }
    event.preventDefault();
    var text = button.getAttribute("data-copy") || "";
    var copy = navigator.clipboard && window.isSecureContext
      ? navigator.clipboard.writeText(text).catch(function () { return fallback(text); })
      : fallback(text);
    copy.then(
      function () { say(button, "Copied"); },
      function () { say(button, "Select and copy by hand"); }
    );
  });
})();
