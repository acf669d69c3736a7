// Keeps a console page current: every few seconds it fetches the page again and swaps in its
// live region (the element with data-live="SECONDS"). The page is whole without this script
// (list pages then reload themselves); nothing here is needed to read or use it.
(function () {
  "use strict";
  var region = document.querySelector("[data-live]");
  if (!region || !region.dataset.live) return;
  var seconds = Math.max(2, Number(region.dataset.live) || 5);
  var paused = false;
  var toggle = document.getElementById("live-toggle");
  if (toggle) {
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      paused = !paused;
      toggle.setAttribute("aria-pressed", String(paused));
      toggle.textContent = paused ? "Resume live updates" : "Pause live updates";
    });
  }
  function openDetails() {
    // What the reader opened stays open after the swap.
    return Array.prototype.map.call(region.querySelectorAll("details[open][id]"), function (d) {
      return d.id;
    });
  }
  function refresh() {
    // Never under the reader's hands: not while hidden, paused, or focus is inside.
    if (paused || document.hidden || region.contains(document.activeElement)) return;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (answer) {
        if (!answer.ok || answer.redirected) return null;
        return answer.text();
      })
      .then(function (text) {
        if (text === null) return;
        var fresh = new DOMParser().parseFromString(text, "text/html").querySelector("[data-live]");
        if (!fresh) return;
        var keep = openDetails();
        region.replaceChildren.apply(region, Array.prototype.slice.call(fresh.childNodes));
        keep.forEach(function (id) {
          var again = document.getElementById(id);
          if (again) again.open = true;
        });
      })
      .catch(function () { /* a moment offline: the next tick tries again */ });
  }
  window.setInterval(refresh, seconds * 1000);
})();
