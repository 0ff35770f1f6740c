// carecall on the worker's phone: scan the home's QR code (camera) or NFC tag, keep scans
// made with no signal on the phone and send them when back, and the lone-worker alarm.
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var statusEl = document.getElementById("status");
  var queueEl = document.getElementById("queue");
  var KEY = "carecall.queue";

  function say(text, ok) {
    statusEl.textContent = text;
    statusEl.className = "status " + (ok ? "ok" : "bad");
  }
  function queue() {
    try { return JSON.parse(localStorage.getItem(KEY) || "[]"); } catch (e) { return []; }
  }
  function saveQueue(items) {
    localStorage.setItem(KEY, JSON.stringify(items));
    queueEl.hidden = items.length === 0;
    queueEl.textContent = items.length + " scan(s) saved on this phone, to send when there is signal.";
  }
  function uuid() {
    if (window.crypto && crypto.randomUUID) { return crypto.randomUUID(); }
    var b = new Uint8Array(16); crypto.getRandomValues(b);
    b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }
  function post(url, body) {
    return fetch(url, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: JSON.stringify(body)});
  }
  function markVisit(result) {
    if (!result.visit_id) { return; }
    var row = document.getElementById("visit-" + result.visit_id);
    if (!row) { return; }
    var st = row.querySelector(".vstate");
    var state = result.direction === "arrival" ? "on site" : "done";
    st.textContent = state; st.setAttribute("data-state", state);
  }
  // One scan: sent now, or kept on the phone (with the time it was made) if there is no signal.
  function send(item) {
    return post("/w/tag", item).then(function (r) {
      return r.json().then(function (j) { return {status: r.status, body: j}; });
    });
  }
  function scanned(payload) {
    var item = {payload: payload, client_id: uuid(), scanned_at: new Date().toISOString(), queued: false};
    say("Sending…", true);
    send(item).then(function (res) {
      if (res.body.ok) { say(res.body.message, true); markVisit(res.body); }
      else { say(res.body.error || "Not logged. Ring the office.", false); }
    }, function () {
      item.queued = true;
      var items = queue(); items.push(item); saveQueue(items);
      say("No signal: the scan is saved on this phone and will be sent when back.", true);
    });
  }
  var flushing = false;
  function flush() {
    var items = queue();
    if (flushing || items.length === 0) { return; }
    flushing = true;
    var item = items[0];
    send(item).then(function (res) {
      saveQueue(queue().slice(1));
      if (res.body.ok) { say(res.body.message, true); markVisit(res.body); }
      else { say("A saved scan was refused: " + (res.body.error || "ring the office"), false); }
      flushing = false; flush();
    }, function () { flushing = false; });
  }

  // --- QR code through the camera (jsQR decodes the frames) ---
  var video = document.getElementById("camera");
  var canvas = document.getElementById("frame");
  var stream = null;
  function stopCamera() {
    if (stream) { stream.getTracks().forEach(function (t) { t.stop(); }); stream = null; }
    video.hidden = true;
  }
  function tick() {
    if (!stream) { return; }
    if (video.readyState >= 2 && video.videoWidth) {
      canvas.width = video.videoWidth; canvas.height = video.videoHeight;
      var c = canvas.getContext("2d", {willReadFrequently: true});
      c.drawImage(video, 0, 0, canvas.width, canvas.height);
      var img = c.getImageData(0, 0, canvas.width, canvas.height);
      var code = window.jsQR(img.data, img.width, img.height, {inversionAttempts: "dontInvert"});
      if (code && code.data) { stopCamera(); scanned(code.data); return; }
    }
    requestAnimationFrame(tick);
  }
  document.getElementById("scan-qr").addEventListener("click", function () {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say("This phone cannot use its camera here; tap the tag instead.", false); return;
    }
    navigator.mediaDevices.getUserMedia({video: {facingMode: "environment"}}).then(function (s) {
      stream = s; video.srcObject = s; video.hidden = false; video.play(); say("Point the camera at the code.", true);
      requestAnimationFrame(tick);
    }, function () { say("The camera is not allowed; allow it in the browser, or tap the tag.", false); });
  });

  // --- NFC tag (Web NFC: Chrome on Android) ---
  if ("NDEFReader" in window) {
    var nfc = document.getElementById("scan-nfc");
    nfc.hidden = false;
    nfc.addEventListener("click", function () {
      var reader = new window.NDEFReader();
      reader.scan().then(function () {
        say("Hold the phone to the tag.", true);
        reader.onreading = function (event) {
          var dec = new TextDecoder();
          event.message.records.forEach(function (rec) {
            if (rec.recordType === "url" || rec.recordType === "text") { scanned(dec.decode(rec.data)); }
          });
        };
      }, function () { say("NFC is off or not allowed on this phone.", false); });
    });
  }

  // --- the alarm: two taps, so a pocket press does not send it ---
  var alarm = document.getElementById("alarm");
  var armed = null;
  alarm.addEventListener("click", function () {
    if (!armed) {
      alarm.textContent = "Tap again to send the alarm";
      armed = setTimeout(function () { armed = null; alarm.textContent = "Alarm: I need help"; }, 5000);
      return;
    }
    clearTimeout(armed); armed = null;
    post("/w/alarm", {}).then(function (r) { return r.json(); }).then(function (j) {
      alarm.textContent = "Alarm sent"; say(j.message, true);
    }, function () { say("No signal: the alarm could not be sent. Ring 999 or the office.", false); });
  });

  // A tag URL the phone opened itself (/t/… redirects here with #tag=…).
  function fromHash() {
    if (location.hash.indexOf("#tag=") !== 0) { return; }
    var payload = decodeURIComponent(location.hash.slice(5));
    history.replaceState(null, "", "/w");
    scanned(payload);
  }
  fromHash();
  window.addEventListener("hashchange", fromHash);
  saveQueue(queue());
  flush();
  window.addEventListener("online", flush);
  setInterval(flush, 15000);
}());
