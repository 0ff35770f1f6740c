// Live lists: replaces a table body with rows the server renders (already escaped by Jinja).
// <span id="live" data-src="/…/events" data-event="alerts" data-target="alert-rows">
"use strict";
(function () {
  const live = document.getElementById("live");
  const body = live && document.getElementById(live.dataset.target);
  if (!live || !body || !window.EventSource) { return; }
  const source = new EventSource(live.dataset.src);
  source.addEventListener("open", function () { live.textContent = "live"; live.className = "live on"; });
  source.addEventListener("error", function () { live.textContent = "reconnecting…"; live.className = "live off"; });
  source.addEventListener(live.dataset.event, function (event) {
    const template = document.createElement("template");
    template.innerHTML = event.data;
    body.replaceChildren(template.content);
    live.textContent = "live · " + new Date().toLocaleTimeString("en-GB");
    live.className = "live on";
  });
})();
