/* Labhub usage portal - small hand-written behaviour for the Pods and Sync tabs.
 * No framework and nothing loaded from elsewhere: everything talks to this portal's own URLs. */
(function () {
  "use strict";

  function meta(name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.getAttribute("content") : "";
  }

  function csrfHeaders() {
    var headers = { "Content-Type": "application/json", "Accept": "application/json" };
    var header = meta("csrf-header");
    var token = meta("csrf-token");
    if (header && token) { headers[header] = token; }
    return headers;
  }

  /* A clock time in the portal's zone (PORTAL_TIMEZONE, on <body data-zone>), as every time the
   * server renders, not in the browser's own zone. */
  function portalTime(date) {
    var zone = document.body.getAttribute("data-zone") || "UTC";
    try {
      return date.toLocaleTimeString("en-GB", { timeZone: zone, hour12: false });
    } catch (e) {  /* a zone this browser does not know: say which zone the time is in */
      return date.toLocaleTimeString("en-GB", { timeZone: "UTC", hour12: false }) + " UTC";
    }
  }

  function setStatus(el, text, kind) {
    if (!el) { return; }
    el.textContent = text;
    el.className = "status" + (kind ? " " + kind : "");
  }

  function errorText(response, body) {
    var detail = body && (body.detail || body.message);
    if (detail && typeof detail !== "string") { detail = JSON.stringify(detail); }
    return "HTTP " + response.status + (detail ? ": " + detail : "");
  }

  function readJson(response) {
    return response.text().then(function (text) {
      try { return text ? JSON.parse(text) : null; } catch (e) { return { detail: text }; }
    });
  }

  /* ---- durations that keep ticking between refreshes ------------------------------- */
  function formatAge(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600), m = Math.floor(seconds % 3600 / 60);
    if (d > 0) { return d + "d " + h + "h"; }
    if (h > 0) { return h + "h " + m + "m"; }
    return m + "m " + (seconds % 60) + "s";
  }

  function tickAges() {
    var now = Date.now();
    document.querySelectorAll("[data-started]").forEach(function (el) {
      var started = Date.parse(el.getAttribute("data-started"));
      if (!isNaN(started)) { el.textContent = formatAge((now - started) / 1000); }
    });
  }

  /* ---- Pods tab ------------------------------------------------------------------------- */
  function initPods() {
    var region = document.getElementById("pod-region");
    if (!region) { return; }
    var stopButton = document.getElementById("stop-selected");
    var clearButton = document.getElementById("clear-selection");
    var counter = document.getElementById("selection-count");
    var dialog = document.getElementById("stop-dialog");
    var dialogList = document.getElementById("stop-dialog-list");
    var confirmButton = document.getElementById("stop-confirm");
    var cancelButton = document.getElementById("stop-cancel");
    var status = document.getElementById("pods-status");
    var selected = new Set();
    var busy = false;
    var refreshMs = parseInt(region.getAttribute("data-refresh-ms") || "0", 10);

    function cards() { return Array.prototype.slice.call(region.querySelectorAll(".pod-card")); }

    function sync() {
      var present = new Set(cards().map(function (c) { return c.dataset.pod; }));
      selected.forEach(function (name) { if (!present.has(name)) { selected.delete(name); } });
      cards().forEach(function (card) {
        card.setAttribute("aria-pressed", selected.has(card.dataset.pod) ? "true" : "false");
      });
      var n = selected.size;
      counter.textContent = n === 0 ? "No servers selected" : n + (n === 1 ? " server selected" : " servers selected");
      stopButton.disabled = n === 0 || busy;
      clearButton.disabled = n === 0;
    }

    function toggle(card) {
      var name = card.dataset.pod;
      if (selected.has(name)) { selected.delete(name); } else { selected.add(name); }
      sync();
    }

    region.addEventListener("click", function (event) {
      var card = event.target.closest(".pod-card");
      if (card) { toggle(card); }
    });
    region.addEventListener("keydown", function (event) {
      var card = event.target.closest(".pod-card");
      if (!card || event.target !== card) { return; }
      if (event.key === " " || event.key === "Enter" || event.key === "Spacebar") {
        event.preventDefault();
        toggle(card);
      }
    });
    clearButton.addEventListener("click", function () { selected.clear(); sync(); });

    function refresh() {
      if (busy) { return Promise.resolve(); }
      var focusedPod = document.activeElement && document.activeElement.classList &&
        document.activeElement.classList.contains("pod-card") ? document.activeElement.dataset.pod : null;
      return fetch(region.getAttribute("data-fragment-url"), { headers: { "Accept": "text/html" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.text();
        })
        .then(function (html) {
          region.innerHTML = html;
          sync();
          tickAges();
          if (focusedPod) {
            var again = region.querySelector('.pod-card[data-pod="' + CSS.escape(focusedPod) + '"]');
            if (again) { again.focus(); }
          }
          var stamp = document.getElementById("pods-updated");
          if (stamp) { stamp.textContent = "Updated " + portalTime(new Date()); }
        })
        .catch(function (err) { setStatus(status, "Could not refresh the pod list (" + err.message + ")", "err"); });
    }

    stopButton.addEventListener("click", function () {
      if (selected.size === 0) { return; }
      dialogList.innerHTML = "";
      Array.from(selected).sort().forEach(function (name) {
        var card = region.querySelector('.pod-card[data-pod="' + CSS.escape(name) + '"]');
        var li = document.createElement("li");
        li.textContent = name + (card ? " (" + card.dataset.user + ")" : "");
        dialogList.appendChild(li);
      });
      document.getElementById("stop-dialog-count").textContent = String(selected.size);
      dialog.showModal();
      cancelButton.focus();
    });
    cancelButton.addEventListener("click", function () { dialog.close("cancel"); });

    confirmButton.addEventListener("click", function () {
      var names = Array.from(selected).sort();
      dialog.close("confirm");
      busy = true;
      sync();
      setStatus(status, "Stopping " + names.length + " server(s)\u2026", "");
      fetch(region.getAttribute("data-stop-url"), {
        method: "POST",
        credentials: "same-origin",
        headers: csrfHeaders(),
        body: JSON.stringify({ pods: names })
      })
        .then(function (response) {
          return readJson(response).then(function (body) { return { response: response, body: body }; });
        })
        .then(function (r) {
          busy = false;
          if (!r.response.ok) {
            setStatus(status, "Stop failed: " + errorText(r.response, r.body), "err");
            sync();
            return;
          }
          var results = (r.body && r.body.results) || [];
          var bad = results.filter(function (x) { return x.result === "refused" || x.result === "failed"; });
          var good = results.filter(function (x) { return x.result === "deleted" || x.result === "stopping"; });
          var text = "Stopped " + good.length + " server(s)" +
            (good.length ? ": " + good.map(function (x) { return x.pod_name; }).join(", ") : "") + ".";
          if (bad.length) {
            text += " Not stopped: " + bad.map(function (x) { return x.pod_name + " (" + x.detail + ")"; }).join("; ");
          }
          setStatus(status, text, bad.length ? "err" : "ok");
          selected.clear();
          return refresh();
        })
        .catch(function (err) { busy = false; sync(); setStatus(status, "Stop failed: " + err.message, "err"); });
    });

    sync();
    if (refreshMs > 0) { window.setInterval(refresh, refreshMs); }
  }

  /* ---- Sync tab ------------------------------------------------------------------------- */
  function initSync() {
    var button = document.getElementById("sync-now");
    if (!button) { return; }
    var status = document.getElementById("sync-status");
    var region = document.getElementById("sync-region");
    button.addEventListener("click", function () {
      button.disabled = true;
      setStatus(status, "Syncing\u2026", "");
      fetch(button.getAttribute("data-url"), { method: "POST", credentials: "same-origin", headers: csrfHeaders(), body: "{}" })
        .then(function (response) {
          return readJson(response).then(function (body) { return { response: response, body: body }; });
        })
        .then(function (r) {
          if (!r.response.ok) {
            setStatus(status, "Sync failed: " + errorText(r.response, r.body), "err");
          } else if (r.response.status === 202) {
            setStatus(status, "Sync running in the background; the panel below shows its state.", "");
          } else {
            setStatus(status, "Sync finished: " + (r.body ? r.body.rows : 0) + " row(s) written.", "ok");
          }
          return fetch(region.getAttribute("data-fragment-url"), { credentials: "same-origin" })
            .then(function (response) { return response.ok ? response.text() : null; })
            .then(function (html) { if (html !== null) { region.innerHTML = html; } });
        })
        .catch(function (err) { setStatus(status, "Sync failed: " + err.message, "err"); })
        .then(function () { button.disabled = button.hasAttribute("data-disabled"); });
    });
  }

  function initLogout() {
    var button = document.getElementById("logout");
    if (!button) { return; }
    button.addEventListener("click", function () {
      fetch(button.getAttribute("data-url"), { method: "POST", credentials: "same-origin", headers: csrfHeaders() })
        .then(function () { window.location.assign(button.getAttribute("data-next")); });
    });
  }

  /* ---- live regions: summary cards, sync panel (data-live-url, data-refresh-ms) ------- */
  function initLiveRegions() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-live-url][data-refresh-ms]"), function (region) {
      var ms = parseInt(region.getAttribute("data-refresh-ms") || "0", 10);
      if (!(ms > 0)) { return; }
      window.setInterval(function () {
        if (document.visibilityState === "hidden") { return; }
        fetch(region.getAttribute("data-live-url"), { headers: { "Accept": "text/html" }, credentials: "same-origin" })
          .then(function (response) { return response.ok ? response.text() : null; })
          .then(function (html) {
            if (html !== null) {
              region.innerHTML = html;
              region.setAttribute("data-updated", portalTime(new Date()));
            }
          })
          .catch(function () { /* the next round tries again; the last values stay shown */ });
      }, ms);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    initLogout();
    initLiveRegions();
    initPods();
    initSync();
    tickAges();
    window.setInterval(tickAges, 1000);
  });
})();
