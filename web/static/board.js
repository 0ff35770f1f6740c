// Live board: replaces the table body with rows the server renders (already escaped).
"use strict";
(function () {
  const live = document.getElementById("live");
  const body = document.getElementById("board-rows");
  if (!live || !body || !window.EventSource) { return; }
  const source = new EventSource(live.dataset.src);
  source.addEventListener("open", function () { live.textContent = "live"; live.className = "live on"; });
  source.addEventListener("error", function () { live.textContent = "reconnecting…"; live.className = "live off"; });
  // The counts at the top are the rows' own states, recounted whenever the rows change.
  function recount() {
    for (const c of document.querySelectorAll("[data-count]")) {
      c.textContent = String(body.querySelectorAll(`[data-state="${CSS.escape(c.dataset.count)}"]`).length);
    }
  }
  const banner = document.getElementById("journal-banner");
  source.addEventListener("journal", function (event) {
    // Server-rendered and escaped, like the rows; "" when nothing waits in the journal.
    const template = document.createElement("template");
    template.innerHTML = event.data;
    if (banner) { banner.replaceChildren(template.content); }
  });
  source.addEventListener("board", function (event) {
    const template = document.createElement("template");
    template.innerHTML = event.data;
    body.replaceChildren(template.content);
    recount();
    live.textContent = "live · " + new Date().toLocaleTimeString("en-GB");
    live.className = "live on";
  });
})();
