/*
 * The demo site's own page code (what a customer writes around the Registration UI), shared by
 * the script-tag page (/index.html) and the Vite-built page (/dist-vite/). A classic script,
 * loaded BEFORE the helper and the widget, like a customer's settings block:
 *   1. janrain.settings.capture and janrainCaptureWidgetOnLoad (the page's widget integration);
 *   2. a dashboard: who is signed in, countdown to expiry, next planned refresh, a timeline of
 *      the helper's events, the widget's events and the backend calls, and demo buttons.
 *
 * Page options come from the query string, so a test or a curious user can change them:
 *   ?mode=token|code        janrain.settings.capture.responseType (default token)
 *   ?widgetHours=N          accessTokenLifeHours (fractions allowed; default 1)
 *   ?signin=1               sign the demo user in once the widget is ready
 * Nothing here ever prints a token: events are shown by name and non-secret fields only.
 */
(function () {
  "use strict";

  var params = new URLSearchParams(window.location.search);
  var MODE = params.get("mode") === "code" ? "code" : "token";
  var DEMO_USER = { email: "demo@example.com", password: "demo" };
  var SECRET_FIELDS = ["accessToken", "authorizationCode", "access_token", "refresh_token", "code", "token"];

  // ---- 1. the widget integration --------------------------------------------------------------

  var janrain = (window.janrain = window.janrain || {});
  janrain.settings = janrain.settings || {};
  var capture = (janrain.settings.capture = janrain.settings.capture || {});
  capture.clientId = "capture-session-demo";
  capture.responseType = MODE;
  capture.redirectUri = window.location.origin + "/";
  capture.captureServer = "/sim";
  capture.flowName = "standard";
  capture.flowVersion = "HEAD";
  capture.locale = "en-US";
  var widgetHours = Number(params.get("widgetHours"));
  capture.accessTokenLifeHours = widgetHours > 0 ? widgetHours : 1;
  capture.beforeJanrainCaptureWidgetOnLoad = capture.beforeJanrainCaptureWidgetOnLoad || [];

  var WIDGET_EVENTS = [
    "onCaptureLoginSuccess",
    "onCaptureLoginFailed",
    "onCaptureSessionCreated",
    "onCaptureSessionFound",
    "onCaptureSessionNotFound",
    "onCaptureSessionEnded",
    "onCaptureExpiredToken",
    "onCaptureInvalidToken",
    "onCaptureAccessDenied",
    "onCaptureSaveSuccess",
    "onCaptureSaveFailed",
  ];

  // Structured log for tests and for the timeline: {t, source, name, text, level}.
  var demoLog = (window.demoLog = []);
  var listeners = [];
  function log(source, name, text, level, at) {
    var entry = { t: at || Date.now(), source: source, name: name, text: text || "", level: level || "info" };
    demoLog.push(entry);
    if (demoLog.length > 500) demoLog.shift();
    listeners.forEach(function (fn) {
      fn(entry);
    });
  }

  // A short, token-free description of a widget or helper payload.
  function describe(detail) {
    if (!detail || typeof detail !== "object") return "";
    var parts = [];
    Object.keys(detail).forEach(function (k) {
      if (SECRET_FIELDS.indexOf(k) >= 0) return;
      var v = detail[k];
      if (v === null || v === undefined || typeof v === "object" || typeof v === "function") return;
      if (k === "transactionId" || k === "flow" || k === "version") return;
      if (k === "expiresAt" && typeof v === "number") v = new Date(v).toLocaleTimeString([], { hour12: false });
      parts.push(k + "=" + String(v));
    });
    return parts.join(" ");
  }

  var pendingSave = null; // display name of a save that failed because the token was dead

  window.janrainCaptureWidgetOnLoad = function () {
    WIDGET_EVENTS.forEach(function (name) {
      janrain.events[name].addHandler(function (result) {
        var bad = result && result.status === "error";
        log("widget", name, describe(result), bad ? "warn" : "info");
      });
    });
    janrain.events.onCaptureSaveFailed.addHandler(function () {
      pendingSave = currentDisplayName();
    });
    janrain.events.onCaptureExpiredToken.addHandler(function (result) {
      if (result && result.screen === "editProfile") pendingSave = currentDisplayName();
    });
    janrain.events.onCaptureSaveSuccess.addHandler(function () {
      pendingSave = null;
    });
    janrain.events.onCaptureSessionEnded.addHandler(function () {
      pendingSave = null;
    });
    janrain.capture.ui.start();
  };

  function currentDisplayName() {
    var input = document.querySelector("#capture_editProfileForm input[name=displayName]");
    return input ? input.value : null;
  }

  // What a real site does after the helper renewed a dead token: retry the action that failed.
  var RETRY_TRIGGERS = ["save-failed", "expired-token", "invalid-token", "access-denied"];
  function onHelperEvent(type, detail) {
    var level = type === "refresh-failed" || type === "warning" ? "warn" : type === "ended" ? "end" : "ok";
    log("helper", type, describe(detail), level);
    if (type === "active" || type === "refreshed") noteGrant(detail);
    if (type === "ended") grant = null;
    if (type === "refreshed" && pendingSave !== null && detail && RETRY_TRIGGERS.indexOf(detail.trigger) >= 0) {
      var name = pendingSave;
      pendingSave = null;
      log("demo", "retry save", "the token was renewed: saving the profile again");
      janrain.capture.ui.standIn.saveProfile(name);
    }
  }
  ["active", "refreshed", "refresh-failed", "ended", "warning"].forEach(function (type) {
    window.addEventListener("capture-session:" + type, function (ev) {
      onHelperEvent(type, ev.detail);
    });
  });

  // The grant the helper last reported: for "next planned refresh".
  var grant = null;
  function noteGrant(detail) {
    if (!detail || typeof detail.expiresAt !== "number") return;
    grant = { receivedAt: Date.now(), expiresAt: detail.expiresAt };
  }

  // ---- backend calls, seen through Resource Timing (no patching of fetch) -------------------

  function watchRequests() {
    if (!("PerformanceObserver" in window)) return;
    try {
      new PerformanceObserver(function (list) {
        list.getEntries().forEach(function (e) {
          if (e.initiatorType !== "fetch" && e.initiatorType !== "xmlhttprequest") return;
          var url = new URL(e.name, window.location.href);
          var backend = url.pathname.indexOf("/capture-session/") === 0;
          if (url.pathname.indexOf("/_admin/") >= 0) return;
          var sim = url.pathname.indexOf("/sim/") === 0;
          if (!backend && !sim) return;
          var status = e.responseStatus ? String(e.responseStatus) : "failed";
          var ok = e.responseStatus >= 200 && e.responseStatus < 300;
          log(
            backend ? "backend" : "capture",
            "POST " + url.pathname,
            status + " in " + Math.round(e.duration) + " ms",
            ok ? "info" : "warn",
            Math.round(performance.timeOrigin + e.startTime),
          );
        });
      }).observe({ type: "resource", buffered: true });
    } catch (_) {
      /* an old browser: the timeline shows helper and widget events only */
    }
  }

  // ---- the demo server's admin API (fault injection, token revocation) ----------------------

  function admin(method, path, body) {
    return fetch(path, {
      method: method,
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    }).then(function (res) {
      if (!res.ok) throw new Error("HTTP " + res.status);
      return res.status === 204 ? null : res.json();
    });
  }

  // ---- 2. the dashboard ---------------------------------------------------------------------

  // The dashboard's markup, shared by both variants of the page (static text: no user data).
  var DASHBOARD = [
    "  <header class=\"top\">",
    "    <div class=\"brand\">",
    "      <span class=\"logo\">◆</span>",
    "      <div>",
    "        <h1>capture-session</h1>",
    "        <p>Keeps an Identity Cloud Registration UI session alive: refresh, every tab, logout.</p>",
    "      </div>",
    "    </div>",
    "    <nav class=\"variants\">",
    "      <a id=\"variant-tag\" href=\"/\">Script tag</a>",
    "      <a id=\"variant-vite\" href=\"/dist-vite/\">Vite + npm</a>",
    "      <span class=\"sep\"></span>",
    "      <a id=\"mode-token\" href=\"/?mode=token\">Token mode</a>",
    "      <a id=\"mode-code\" href=\"/?mode=code\">Code mode</a>",
    "    </nav>",
    "  </header>",
    "",
    "  <main class=\"grid\">",
    "    <section class=\"card status\" aria-label=\"Session\">",
    "      <div class=\"who\">",
    "        <div>",
    "          <div class=\"label\">Signed in</div>",
    "          <div id=\"who\" class=\"big\">nobody</div>",
    "          <div id=\"who-detail\" class=\"muted\"></div>",
    "        </div>",
    "        <span id=\"state\" class=\"badge\">loading</span>",
    "      </div>",
    "      <div class=\"meters\">",
    "        <div class=\"meter\">",
    "          <div class=\"label\">Token expires in</div>",
    "          <div id=\"expiry\" class=\"big mono\">—</div>",
    "          <div class=\"track\"><div id=\"expiry-bar\" class=\"bar\"></div></div>",
    "          <div id=\"expiry-at\" class=\"muted mono\"></div>",
    "        </div>",
    "        <div class=\"meter\">",
    "          <div class=\"label\">Next planned refresh</div>",
    "          <div id=\"next-refresh\" class=\"big mono\">—</div>",
    "          <div id=\"next-refresh-at\" class=\"muted mono\"></div>",
    "        </div>",
    "      </div>",
    "      <dl class=\"facts\">",
    "        <dt>Helper</dt><dd><span id=\"variant\">script tag</span> · <span id=\"mode\">token mode</span></dd>",
    "        <dt>Widget session</dt><dd><span id=\"widget-session\">no</span> · widget's own expiry <span id=\"widget-expiry\" class=\"mono\">—</span></dd>",
    "      </dl>",
    "    </section>",
    "",
    "    <section class=\"card actions\" aria-label=\"Actions\">",
    "      <h2>Try it</h2>",
    "      <div class=\"buttons\">",
    "        <button id=\"btn-signin-token\" class=\"primary\">Sign in · token mode</button>",
    "        <button id=\"btn-signin-code\" class=\"primary\">Sign in · code mode</button>",
    "        <button id=\"btn-save\">Save profile</button>",
    "        <button id=\"btn-refresh\">Refresh now</button>",
    "        <button id=\"btn-kill\" class=\"danger\">Kill the token now</button>",
    "        <button id=\"btn-down\" class=\"danger\">Take backend down</button>",
    "        <button id=\"btn-up\" class=\"ok\" hidden>Bring backend back</button>",
    "        <button id=\"btn-tab\">Open another tab</button>",
    "        <button id=\"btn-signout\">Sign out</button>",
    "      </div>",
    "      <p class=\"muted small\">\"Kill the token\" revokes the access token at the Identity Cloud simulator;",
    "        the next profile save fails with <code>invalidAccessToken</code>, the helper gets a new token",
    "        and the save is retried. \"Take backend down\" makes <code>/capture-session/refresh</code>",
    "        answer 503: the session lives on while its token is valid.</p>",
    "    </section>",
    "",
    "    <section class=\"card widget\" aria-label=\"Registration UI\">",
    "      <h2>Registration UI <span class=\"muted small\">(stand-in)</span></h2>",
    "      <div id=\"janrainCaptureWidget\"></div>",
    "    </section>",
    "",
    "    <section class=\"card timeline-card\" aria-label=\"Timeline\">",
    "      <div class=\"timeline-head\">",
    "        <h2>Timeline</h2>",
    "        <div class=\"legend\">",
    "          <span class=\"src-helper\">◆ helper</span>",
    "          <span class=\"src-widget\">● widget</span>",
    "          <span class=\"src-backend\">⇄ backend</span>",
    "          <span class=\"src-capture\">☁ Identity Cloud</span>",
    "          <button id=\"btn-clear\" class=\"link\">clear</button>",
    "        </div>",
    "      </div>",
    "      <ol id=\"timeline\" class=\"timeline\"></ol>",
    "    </section>",
    "  </main>",
  ].join("\n");

  function mountDashboard() {
    var variant = document.body.getAttribute("data-variant") || "script tag";
    var root = document.createElement("div");
    root.id = "demo";
    root.innerHTML = DASHBOARD;
    document.body.appendChild(root);
    $("#variant").textContent = variant;
    $(variant === "script tag" ? "#variant-tag" : "#variant-vite").classList.add("current");
  }

  function $(sel) {
    return document.querySelector(sel);
  }
  function session() {
    return window.captureSession || null;
  }

  function fmtSeconds(ms) {
    if (!(ms > -Infinity)) return "—";
    var s = Math.round(ms / 1000);
    var sign = s < 0 ? "-" : "";
    s = Math.abs(s);
    var m = Math.floor(s / 60);
    return sign + (m > 0 ? m + " min " + String(s % 60).padStart(2, "0") + " s" : s + " s");
  }
  function fmtClock(t) {
    var d = new Date(t);
    return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  function refreshAheadMs() {
    var s = session();
    var fromPage = s && s.refreshAheadSeconds;
    var tag = document.querySelector("script[data-refresh-url]");
    var fromTag = tag && Number(tag.getAttribute("data-refresh-ahead-seconds"));
    var seconds = Number(window.demoRefreshAheadSeconds || fromPage || fromTag) || 300;
    return seconds * 1000;
  }

  function renderStatus() {
    var s = session();
    var now = Date.now();
    var profile = null;
    try {
      profile = JSON.parse(localStorage.getItem("janrainCaptureProfileData") || "null");
    } catch (_) {
      profile = null;
    }
    var widgetLive = !!(window.janrain && janrain.capture && janrain.capture.ui && janrain.capture.ui.hasActiveSession && janrain.capture.ui.hasActiveSession());
    var state = s ? s.state : "loading";
    var expiresAt = s && typeof s.expiresAt === "number" ? s.expiresAt : null;
    // "refreshing" alone is not a session: at start-up the helper asks the backend whether there is one.
    var signedIn = state === "active" || (state === "refreshing" && expiresAt !== null) || (widgetLive && state !== "ended");

    $("#who").textContent = signedIn ? (profile && (profile.displayName || profile.email)) || "signed in" : "nobody";
    $("#who-detail").textContent = signedIn && profile ? (profile.email || "") + (profile.uuid ? " · uuid " + profile.uuid.slice(0, 8) + "…" : "") : "Sign in with demo@example.com / demo";
    var badge = $("#state");
    badge.textContent = state;
    badge.className = "badge state-" + state;

    var left = expiresAt ? expiresAt - now : null;
    $("#expiry").textContent = expiresAt ? (left > 0 ? fmtSeconds(left) : "expired") : "—";
    $("#expiry-at").textContent = expiresAt ? "at " + new Date(expiresAt).toLocaleTimeString([], { hour12: false }) : "no token";
    var bar = $("#expiry-bar");
    if (expiresAt && grant && grant.expiresAt === expiresAt) {
      var total = grant.expiresAt - grant.receivedAt;
      bar.style.width = Math.max(0, Math.min(100, (100 * left) / total)) + "%";
    } else {
      bar.style.width = expiresAt && left > 0 ? "100%" : "0%";
    }
    bar.className = "bar" + (left !== null && left < 15000 ? " low" : "");

    var next = s && typeof s.nextRefreshAt === "number" ? s.nextRefreshAt : null;
    if (next === null && expiresAt && grant && grant.expiresAt === expiresAt && state === "active") {
      var lifetime = grant.expiresAt - grant.receivedAt;
      next = expiresAt - Math.min(refreshAheadMs(), lifetime / 2);
    }
    $("#next-refresh").textContent = state === "refreshing" ? "now" : next ? (next - now > 0 ? "in " + fmtSeconds(next - now) : "due") : "—";
    $("#next-refresh-at").textContent = next ? "at " + new Date(next).toLocaleTimeString([], { hour12: false }) : "";

    var wExp = Date.parse(localStorage.getItem("janrainCaptureToken_Expires") || "");
    $("#widget-expiry").textContent = wExp ? fmtSeconds(wExp - now) : "—";
    $("#widget-session").textContent = widgetLive ? "yes" : "no";

    $("#btn-signin-token").disabled = signedIn;
    $("#btn-signin-code").disabled = signedIn;
    $("#btn-save").disabled = !signedIn;
    $("#btn-kill").disabled = !signedIn;
    $("#btn-refresh").disabled = !s || !signedIn;
    $("#btn-signout").disabled = !signedIn;
  }

  var ICONS = { helper: "◆", widget: "●", backend: "⇄", capture: "☁", demo: "▸", server: "⚙" };
  function renderEntry(entry) {
    var list = $("#timeline");
    if (!list) return;
    var li = document.createElement("li");
    li.className = "src-" + entry.source + " lvl-" + entry.level;
    var time = document.createElement("time");
    time.textContent = fmtClock(entry.t);
    var src = document.createElement("span");
    src.className = "src";
    src.textContent = (ICONS[entry.source] || "") + " " + entry.source;
    var name = document.createElement("strong");
    name.textContent = entry.name;
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = entry.text;
    li.appendChild(time);
    li.appendChild(src);
    li.appendChild(name);
    li.appendChild(text);
    li.setAttribute("data-t", String(entry.t));
    // Newest first; a request is logged when it completes but placed at the time it started.
    var before = list.firstChild;
    while (before && Number(before.getAttribute("data-t")) > entry.t) before = before.nextSibling;
    list.insertBefore(li, before);
    while (list.childNodes.length > 150) list.removeChild(list.lastChild);
  }

  function setBackendButtons(down) {
    $("#btn-down").hidden = down;
    $("#btn-up").hidden = !down;
    document.body.classList.toggle("backend-down", down);
  }

  function action(name, fn) {
    return function () {
      log("demo", name, "");
      Promise.resolve()
        .then(fn)
        .catch(function (err) {
          log("demo", name + " failed", (err && err.message) || "error", "warn");
        });
    };
  }

  function signInAs(mode) {
    if (mode !== MODE) {
      var url = new URL(window.location.href);
      url.searchParams.set("mode", mode);
      url.searchParams.set("signin", "1");
      window.location.href = url.toString();
      return;
    }
    janrain.capture.ui.standIn.signIn(DEMO_USER.email, DEMO_USER.password);
  }

  function wireButtons() {
    $("#btn-signin-token").addEventListener("click", action("sign in (token mode)", function () {
      signInAs("token");
    }));
    $("#btn-signin-code").addEventListener("click", action("sign in (code mode)", function () {
      signInAs("code");
    }));
    $("#btn-save").addEventListener("click", action("save profile", function () {
      if (janrain.capture.ui.standIn.currentScreen() !== "editProfile") janrain.capture.ui.renderScreen("editProfile");
      var name = "Demo User " + new Date().toLocaleTimeString([], { hour12: false });
      var input = document.querySelector("#capture_editProfileForm input[name=displayName]");
      if (input) input.value = name;
      janrain.capture.ui.standIn.saveProfile(name);
    }));
    $("#btn-kill").addEventListener("click", action("kill the token now", function () {
      var profile = JSON.parse(localStorage.getItem("janrainCaptureProfileData") || "{}") || {};
      var who = profile.uuid ? { uuid: profile.uuid } : { email: DEMO_USER.email };
      return admin("POST", "/capture-session/_admin/revoke", who).then(function (r) {
        log("server", "token killed", (r && r.revokedAccessTokens) + " access token(s) revoked at Identity Cloud", "warn");
      });
    }));
    $("#btn-down").addEventListener("click", action("take backend down", function () {
      return admin("POST", "/capture-session/_admin/outage", { mode: "503", retryAfter: 5 }).then(function () {
        setBackendButtons(true);
        log("server", "backend down", "/capture-session/* answer 503 with Retry-After: 5", "warn");
      });
    }));
    $("#btn-up").addEventListener("click", action("bring backend back", function () {
      return admin("POST", "/capture-session/_admin/outage", { mode: "off" }).then(function () {
        setBackendButtons(false);
        log("server", "backend back", "faults cleared", "ok");
      });
    }));
    $("#btn-tab").addEventListener("click", action("open another tab", function () {
      var url = new URL(window.location.href);
      url.searchParams.delete("signin");
      window.open(url.toString(), "_blank");
    }));
    $("#btn-refresh").addEventListener("click", action("refresh now", function () {
      var s = session();
      if (!s) throw new Error("the helper is not loaded");
      return s.refresh();
    }));
    $("#btn-signout").addEventListener("click", action("sign out", function () {
      var s = session();
      if (s) return s.end();
      janrain.capture.ui.endCaptureSession();
    }));
    $("#btn-clear").addEventListener("click", function () {
      $("#timeline").textContent = "";
    });
  }

  function markMode() {
    var el = $("#mode");
    if (el) el.textContent = MODE === "code" ? "code mode" : "token mode";
    var tokenLink = $("#mode-token");
    var codeLink = $("#mode-code");
    if (tokenLink && codeLink) {
      var url = new URL(window.location.href);
      url.searchParams.delete("signin");
      url.searchParams.set("mode", "token");
      tokenLink.href = url.pathname + url.search;
      url.searchParams.set("mode", "code");
      codeLink.href = url.pathname + url.search;
      (MODE === "code" ? codeLink : tokenLink).classList.add("current");
    }
  }

  function boot() {
    mountDashboard();
    markMode();
    demoLog.forEach(renderEntry);
    listeners.push(renderEntry);
    wireButtons();
    watchRequests();
    admin("GET", "/capture-session/_admin/outage")
      .then(function (outage) {
        setBackendButtons(!!outage);
      })
      .catch(function () {
        /* not the demo server: no admin controls */
      });
    renderStatus();
    setInterval(renderStatus, 250);
    if (params.get("signin") === "1") {
      var tries = 0;
      var wait = setInterval(function () {
        tries++;
        var ready = janrain.capture && janrain.capture.ui && janrain.capture.ui.standIn && janrain.capture.ui.standIn.currentScreen();
        if (ready || tries > 100) {
          clearInterval(wait);
          if (ready === "signIn") janrain.capture.ui.standIn.signIn(DEMO_USER.email, DEMO_USER.password);
          var url = new URL(window.location.href);
          url.searchParams.delete("signin");
          history.replaceState(null, "", url.pathname + url.search);
        }
      }, 50);
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
