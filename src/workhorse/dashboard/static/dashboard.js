// Live updates: the store's change notices (SSE) make htmx reload the regions that listen
// for "wh:changed", at most once a second; charts redraw every 15 s.
(function () {
  "use strict";
  var body = document.body;
  var prefix = body.dataset.prefix || "";

  document.addEventListener("submit", function (ev) {
    var text = ev.target.dataset && ev.target.dataset.confirm;
    if (text && !window.confirm(text)) { ev.preventDefault(); }
  });

  // The stream reconnects with a growing pause (1 s doubling to 30 s) and gives up after
  // MAX_FAILURES failures in a row (a logged-out session, a server gone), saying so.
  var MAX_FAILURES = 8;
  var live = document.getElementById("live-status");
  function say(text) {
    if (!live) { return; }
    live.textContent = text;
    live.hidden = !text;
  }

  // A live region mid-request, or just swapped in and not yet listening: htmx would drop a
  // reload triggered now (a queued request of a swapped-out region is never sent).
  var BUSY = '[hx-trigger^="wh:changed"].htmx-request, [hx-trigger^="wh:changed"].htmx-added';

  if (body.dataset.live && window.EventSource) {
    var failures = 0;
    var last = 0;
    var timer = null;
    // The stream starts after the page's own reads (its cursor, then the last notice's id),
    // so a change made while the page loaded or while the stream was away is not missed.
    var after = body.dataset.after || "";
    var reload = function () {
      if (document.querySelector(BUSY)) {
        timer = setTimeout(reload, 50);
        return;
      }
      timer = null;
      last = Date.now();
      if (window.htmx) { window.htmx.trigger(body, "wh:changed"); }
    };
    // At once after a quiet second, else a second after the last reload: a change shows
    // without waiting, and a burst of notices costs one reload a second.
    var changed = function () {
      if (timer) { return; }
      timer = setTimeout(reload, Math.max(0, last + 1000 - Date.now()));
    };
    var connect = function () {
      var query = after ? "?after=" + encodeURIComponent(after) : "";
      var source = new EventSource(prefix + "/events" + query);
      source.onopen = function () {
        failures = 0;
        say("");
      };
      source.onmessage = function (ev) {
        if (ev.lastEventId) { after = ev.lastEventId; }
        changed();
      };
      source.onerror = function () {
        source.close();
        failures += 1;
        if (failures >= MAX_FAILURES) {
          say("Live updates stopped: the server does not answer. Reload the page to try again.");
          return;
        }
        say("Live updates interrupted; reconnecting…");
        setTimeout(connect, Math.min(30000, 1000 * Math.pow(2, failures - 1)));
      };
    };
    // After htmx has set up the live regions (it does on DOMContentLoaded too).
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", connect);
    } else {
      connect();
    }
  }

  function draw(el, data) {
    if (!window.uPlot) { return; }
    var kind = el.dataset.chart;
    var series = {
      throughput: [{}, { label: "enqueued", stroke: "#0550ae", width: 2, dash: [6, 4] },
                   { label: "completed", stroke: "#1a7f37", width: 2 },
                   { label: "failed", stroke: "#cf222e", width: 2 }],
      failure_rate: [{}, { label: "failure %", stroke: "#cf222e", width: 2,
                       points: { show: true, size: 6 } }],
      wait_ms: [{}, { label: "mean wait, ms", stroke: "#0550ae", width: 2,
                  points: { show: true, size: 6 } }]
    }[kind];
    var values = {
      throughput: [data.t, data.enqueued, data.completed, data.failed],
      failure_rate: [data.t, data.failure_rate],
      wait_ms: [data.t, data.wait_ms]
    }[kind];
    el.textContent = "";
    var width = Math.max(el.clientWidth || 0, 300);
    new window.uPlot({ width: width, height: 180, series: series }, values, el);
    el.setAttribute("role", "img");
    var sum = function (xs) { return (xs || []).reduce(function (a, b) { return a + b; }, 0); };
    el.setAttribute("aria-label", {
      throughput: sum(data.enqueued) + " enqueued, " + sum(data.completed) + " completed and " +
        sum(data.failed) + " failed in the last hour",
      failure_rate: "failure rate per minute over the last hour",
      wait_ms: "mean wait in the queue per minute over the last hour"
    }[kind]);
  }

  function charts() {
    var els = document.querySelectorAll("[data-chart]");
    if (!els.length) { return; }
    var queue = els[0].dataset.queue;
    var url = prefix + "/charts.json" + (queue ? "?queue=" + encodeURIComponent(queue) : "");
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) { els.forEach(function (el) { draw(el, data); }); })
      .catch(function () {});
  }
  charts();
  setInterval(charts, 15000);
})();
