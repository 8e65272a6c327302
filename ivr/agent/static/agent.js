// The agent desk's live list: polls calls.json and pops the newest arriving call.
// Short polling on purpose (see ivr/agent/web.py); everything also works without it.
(function () {
  "use strict";
  var list = document.getElementById("calls");
  var pop = document.getElementById("pop");
  var status = document.getElementById("poll-status");
  if (!list || !pop) { return; }
  var source = list.dataset.source;
  var every = parseInt(list.dataset.pollMs, 10) || 2000;
  var seen = null; // CallSids of the last poll; null until the first one
  var current = pop.dataset.callSid || null;
  // Once the agent works on a pop (or chose it), a new call no longer replaces it.
  var pinned = Boolean(current);
  var headers = { "X-Requested-With": "agent-page", "Accept": "application/json" };

  function text(tag, className, value) {
    var node = document.createElement(tag);
    node.className = className;
    node.textContent = value;
    return node;
  }

  function render(calls, arrived) {
    list.replaceChildren();
    if (calls.length === 0) {
      list.appendChild(text("li", "empty", "No calls transferred to you in the last hour."));
      return;
    }
    calls.forEach(function (call) {
      var item = document.createElement("li");
      item.className = "call";
      if (call.call_sid === current) { item.classList.add("current"); }
      if (arrived.indexOf(call.call_sid) !== -1) { item.classList.add("new"); }
      item.dataset.callSid = call.call_sid;
      var link = document.createElement("a");
      link.href = call.page_url;
      link.dataset.popUrl = call.pop_url;
      link.appendChild(text("span", "time", call.at_text));
      link.appendChild(text("span", "name", call.customer || "Unverified caller"));
      link.appendChild(text("span", "level level-" + call.verification, call.verification_text));
      link.appendChild(text("span", "meta", call.caller + (call.account ? " · account " + call.account : "")));
      if (call.escalated) { link.appendChild(text("span", "badge warn", "escalated")); }
      if (call.manual) { link.appendChild(text("span", "badge", "code " + call.manual)); }
      item.appendChild(link);
      list.appendChild(item);
    });
  }

  function showPop(callSid, url, byHand) {
    return fetch(url, { headers: headers, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null) { return; }
        pop.innerHTML = html; // our own server-rendered, autoescaped fragment
        pop.dataset.callSid = callSid;
        current = callSid;
        pinned = byHand;
        Array.prototype.forEach.call(list.children, function (item) {
          item.classList.toggle("current", item.dataset.callSid === callSid);
        });
        if (byHand) { history.replaceState(null, "", "?call=" + encodeURIComponent(callSid)); }
      });
  }

  function poll() {
    fetch(source, { headers: headers, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); throw new Error("signed out"); }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        var calls = data.calls || [];
        var arrived = seen === null ? [] : calls
          .filter(function (call) { return !seen.has(call.call_sid); })
          .map(function (call) { return call.call_sid; });
        seen = new Set(calls.map(function (call) { return call.call_sid; }));
        render(calls, arrived);
        status.textContent = "Live: checked at " + new Date().toISOString().slice(11, 19) + " UTC.";
        if (arrived.length > 0 && !pinned) {
          var newest = calls.filter(function (call) { return call.call_sid === arrived[0]; })[0];
          return showPop(newest.call_sid, newest.pop_url, false);
        }
        return null;
      })
      .catch(function () {
        status.textContent = "Connection lost: retrying…";
      })
      .then(function () { window.setTimeout(poll, every); });
  }

  list.addEventListener("click", function (event) {
    var link = event.target.closest("a[data-pop-url]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) { return; }
    event.preventDefault();
    showPop(link.parentElement.dataset.callSid, link.dataset.popUrl, true);
  });
  // Working on a pop pins it: ticking a box or typing a code must not be swept away.
  ["input", "focusin"].forEach(function (kind) {
    pop.addEventListener(kind, function () { if (current) { pinned = true; } });
  });

  poll();
}());
