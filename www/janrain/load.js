/*
 * Registration UI stand-in: a small, plain-JavaScript imitation of Akamai Identity Cloud's
 * Capture widget ("Registration UI"), with the real global names, event names, payload shapes,
 * localStorage keys and date format (docs/integration.md). It talks to the Identity Cloud
 * simulator of `capture-session-server --simulate` (janrain.settings.capture.captureServer,
 * "/sim" by default).
 *
 * The page uses it exactly like the real widget:
 *   window.janrain = { settings: { capture: { clientId, responseType, redirectUri, ... } } };
 *   window.janrainCaptureWidgetOnLoad = function () {
 *     janrain.events.onCaptureLoginSuccess.addHandler(function (result) { ... });
 *     janrain.capture.ui.start();
 *   };
 *   <script src="/janrain/load.js"></script>
 * and it renders its screens into <div id="janrainCaptureWidget"></div> (created if missing).
 *
 * What it does not imitate: registration, social login, forgot-password, SSO, the real markup.
 * No eval, no inline handlers: it runs under `script-src 'self'`.
 */
(function () {
  "use strict";

  var TOKEN_KEY = "janrainCaptureToken";
  var EXPIRES_SUFFIX = "_Expires";
  // Every key the real widget (and real logout code) writes or removes.
  var SESSION_KEYS = [
    "janrainCaptureToken",
    "janrainCaptureToken_Expires",
    "janrainCaptureTokenRefresh",
    "janrainCaptureProfileData",
    "janrainCaptureProfileData_Expires",
    "janrainCaptureReturnExperienceData",
    "janrainCaptureReturnExperienceData_Expires",
  ];
  var EVENT_NAMES = [
    "onCaptureLoginStart",
    "onCaptureLoginSuccess",
    "onCaptureLoginFailed",
    "onCaptureRegistrationSuccess",
    "onCaptureSessionCreated",
    "onCaptureSessionFound",
    "onCaptureSessionNotFound",
    "onCaptureSessionEnded",
    "onCaptureExpiredToken",
    "onCaptureInvalidToken",
    "onCaptureAccessDenied",
    "onCaptureSaveStart",
    "onCaptureSaveSuccess",
    "onCaptureSaveFailed",
    "onCaptureProfileLoadSuccess",
    "onCaptureScreenShow",
    "onCaptureRenderComplete",
  ];

  var janrain = (window.janrain = window.janrain || {});
  janrain.settings = janrain.settings || {};
  var settings = (janrain.settings.capture = janrain.settings.capture || {});

  function setting(name, fallback) {
    var value = settings[name];
    return value === undefined || value === null || value === "" ? fallback : value;
  }

  // ---- events -------------------------------------------------------------------------------

  function makeEvent(name) {
    var handlers = [];
    return {
      eventName: name,
      addHandler: function (fn) {
        if (typeof fn !== "function") throw new TypeError(name + ".addHandler expects a function");
        handlers.push(fn);
        return fn;
      },
      removeHandler: function (fn) {
        var i = handlers.indexOf(fn);
        if (i >= 0) handlers.splice(i, 1);
      },
      // Not part of the public API of the real widget; the stand-in uses it internally.
      fire: function (payload) {
        handlers.slice().forEach(function (fn) {
          try {
            fn(payload);
          } catch (err) {
            // A page handler's bug must not stop the widget or the other handlers.
            console.error("janrain stand-in: a handler of " + name + " threw:", err && err.message);
          }
        });
      },
    };
  }

  janrain.events = janrain.events || {};
  EVENT_NAMES.forEach(function (name) {
    if (!janrain.events[name]) janrain.events[name] = makeEvent(name);
  });

  function transactionId() {
    var bytes = new Uint8Array(10);
    crypto.getRandomValues(bytes);
    return Array.prototype.map
      .call(bytes, function (b) {
        return ("0" + b.toString(36)).slice(-2);
      })
      .join("");
  }

  // The generic transaction shape of Capture events.
  function transaction(action, screen, status, statusMessage, extra) {
    var payload = {
      action: action,
      screen: screen,
      status: status,
      statusMessage: statusMessage,
      transactionId: transactionId(),
      flow: setting("flowName", "standard"),
      version: setting("flowVersion", "HEAD"),
    };
    if (extra) {
      Object.keys(extra).forEach(function (k) {
        payload[k] = extra[k];
      });
    }
    return payload;
  }

  function fire(name, payload) {
    janrain.events[name].fire(payload);
  }

  // ---- storage ------------------------------------------------------------------------------

  function read(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (_) {
      return null;
    }
  }
  function write(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch (_) {
      /* storage full or blocked: the session lives in memory only */
    }
  }
  function remove(key) {
    try {
      window.localStorage.removeItem(key);
    } catch (_) {
      /* blocked storage */
    }
  }

  function lifetimeMs() {
    var hours = Number(setting("accessTokenLifeHours", 1));
    if (!(hours > 0)) hours = 1;
    return hours * 3600 * 1000;
  }

  function storedToken() {
    return read(TOKEN_KEY);
  }
  // Expiry the widget believes in (epoch ms), or NaN when missing or unreadable.
  function storedExpiry() {
    var raw = read(TOKEN_KEY + EXPIRES_SUFFIX);
    return raw ? Date.parse(raw) : NaN;
  }
  function localSessionLive() {
    return !!storedToken() && storedExpiry() > Date.now();
  }
  function clearSession() {
    SESSION_KEYS.forEach(remove);
  }

  function storeProfile(user) {
    if (!user || typeof user !== "object") return;
    var profile = {
      uuid: user.uuid,
      displayName: user.displayName || user.givenName || user.email || "",
      email: user.email || "",
    };
    write("janrainCaptureProfileData", JSON.stringify(profile));
    write("janrainCaptureProfileData" + EXPIRES_SUFFIX, new Date(Date.now() + lifetimeMs()).toUTCString());
  }
  function storedProfile() {
    try {
      var p = JSON.parse(read("janrainCaptureProfileData") || "null");
      return p && typeof p === "object" ? p : null;
    } catch (_) {
      return null;
    }
  }

  // ---- the simulator ------------------------------------------------------------------------

  function captureUrl(path) {
    return String(setting("captureServer", "/sim")).replace(/\/+$/, "") + path;
  }

  // POST form-encoded, JSON back; resolves with the parsed body or a synthetic error body.
  function post(path, fields) {
    var body = new URLSearchParams();
    Object.keys(fields).forEach(function (k) {
      if (fields[k] !== undefined && fields[k] !== null) body.append(k, String(fields[k]));
    });
    return fetch(captureUrl(path), {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: body,
      credentials: "same-origin",
    })
      .then(function (res) {
        return res.text().then(function (text) {
          try {
            return JSON.parse(text);
          } catch (_) {
            return { stat: "error", code: 500, error: "unexpected_error", error_description: "HTTP " + res.status };
          }
        });
      })
      .catch(function () {
        return { stat: "error", code: 0, error: "network_error", error_description: "The Capture server could not be reached." };
      });
  }

  function isDeadTokenError(reply) {
    if (!reply || reply.stat !== "error") return false;
    if (reply.code === 414 || reply.error === "access_token_expired") return true;
    // Capture answers 200 invalid_argument when the access_token parameter is unknown.
    return (reply.code === 200 || reply.error === "invalid_argument") && /access_token|token/i.test(reply.error_description || reply.argument_name || "");
  }

  // ---- screens ------------------------------------------------------------------------------

  var currentScreen = null;
  var started = false;
  var busy = false;
  var draft = null; // unsaved edit-profile values survive a re-render (retry after a refresh)
  var messages = {}; // screen -> { kind, text } shown once on the next render

  function container() {
    var el = document.getElementById("janrainCaptureWidget");
    if (!el) {
      el = document.createElement("div");
      el.id = "janrainCaptureWidget";
      document.body.appendChild(el);
    }
    return el;
  }

  function h(tag, attrs, children) {
    var el = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") el.textContent = attrs[k];
      else el.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) {
      if (c) el.appendChild(c);
    });
    return el;
  }

  function field(label, name, type, value, autocomplete) {
    var input = h("input", { name: name, id: "capture_" + name, type: type, autocomplete: autocomplete || "off" });
    input.value = value || "";
    return h("label", { class: "capture_field", for: "capture_" + name }, [h("span", { text: label }), input]);
  }

  // A screen's message stays through re-renders (the helper re-renders after a refresh) until
  // the next action on that screen.
  function notice(screen) {
    var m = messages[screen];
    if (!m) return null;
    return h("p", { class: "capture_tip capture_tip_" + m.kind, role: m.kind === "error" ? "alert" : "status", text: m.text });
  }

  function setMessage(screen, kind, text) {
    messages[screen] = { kind: kind, text: text };
    if (currentScreen === screen) renderScreen(screen);
  }

  function renderSignIn(root) {
    var form = h("form", { class: "capture_form", id: "capture_signInForm", novalidate: "" }, [
      h("h3", { text: "Sign in" }),
      notice("signIn"),
      field("Email", "signInEmailAddress", "email", "", "username"),
      field("Password", "currentPassword", "password", "", "current-password"),
      h("button", { type: "submit", class: "capture_btn capture_primary", id: "capture_signIn_submit", text: "Sign in" }),
      h("p", { class: "capture_hint", text: "Mode: responseType '" + responseType() + "'" }),
    ]);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      signIn(form.elements.signInEmailAddress.value, form.elements.currentPassword.value);
    });
    root.appendChild(form);
  }

  function renderEditProfile(root) {
    var profile = storedProfile() || {};
    var values = draft || { displayName: profile.displayName || "" };
    var form = h("form", { class: "capture_form", id: "capture_editProfileForm", novalidate: "" }, [
      h("h3", { text: "Edit profile" }),
      notice("editProfile"),
      h("p", { class: "capture_hint", text: profile.email ? "Signed in as " + profile.email : "Signed in" }),
      field("Display name", "displayName", "text", values.displayName),
      h("div", { class: "capture_row" }, [
        h("button", { type: "submit", class: "capture_btn capture_primary", id: "capture_editProfile_save", text: "Save" }),
        h("button", { type: "button", class: "capture_btn capture_end_session", id: "capture_signOut", text: "Sign out" }),
      ]),
    ]);
    form.elements.displayName.addEventListener("input", function () {
      draft = { displayName: form.elements.displayName.value };
    });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      saveProfile({ displayName: form.elements.displayName.value });
    });
    form.querySelector(".capture_end_session").addEventListener("click", function () {
      endCaptureSession();
    });
    root.appendChild(form);
  }

  var SCREENS = { signIn: renderSignIn, editProfile: renderEditProfile };

  function renderScreen(name) {
    if (!SCREENS[name]) {
      console.warn("janrain stand-in: no screen named " + JSON.stringify(String(name)));
      return false;
    }
    var root = container();
    root.textContent = "";
    root.setAttribute("data-capture-screen", name);
    currentScreen = name;
    SCREENS[name](root);
    fire("onCaptureScreenShow", { screen: name, renderingBuiltInScreen: true });
    fire("onCaptureRenderComplete", { screen: name, action: "renderScreen" });
    return true;
  }

  // ---- session ------------------------------------------------------------------------------

  function responseType() {
    return setting("responseType", "token") === "code" ? "code" : "token";
  }

  function createCaptureSession(accessToken) {
    if (typeof accessToken !== "string" || accessToken === "") {
      console.warn("janrain stand-in: createCaptureSession needs an access token string");
      return false;
    }
    write(TOKEN_KEY, accessToken);
    write(TOKEN_KEY + EXPIRES_SUFFIX, new Date(Date.now() + lifetimeMs()).toUTCString());
    fire(
      "onCaptureSessionCreated",
      transaction("createCaptureSession", currentScreen, "success", "sessionCreated", { accessToken: accessToken }),
    );
    // A session made by the page (code mode, or after a sign-in elsewhere) shows the signed-in screen.
    if (started && currentScreen === "signIn") {
      renderScreen("editProfile");
      if (!storedProfile()) loadProfile();
    }
    return true;
  }

  function endCaptureSession() {
    var had = !!storedToken();
    clearSession();
    draft = null;
    messages = {};
    fire("onCaptureSessionEnded", transaction("endCaptureSession", currentScreen, "success", had ? "sessionEnded" : "noSession"));
    if (started) renderScreen("signIn");
    return true;
  }

  function hasActiveSession() {
    return localSessionLive();
  }

  function signIn(email, password) {
    if (busy) return;
    busy = true;
    delete messages.signIn;
    var mode = responseType();
    fire("onCaptureLoginStart", transaction("traditionalSignin", "signIn", "pending", "loginStart"));
    post("/oauth/auth_native_traditional", {
      client_id: setting("clientId", ""),
      flow: setting("flowName", "standard"),
      flow_version: setting("flowVersion", "HEAD"),
      locale: setting("locale", "en-US"),
      redirect_uri: setting("redirectUri", window.location.origin + "/"),
      response_type: mode,
      form: "signInForm",
      signInEmailAddress: email,
      currentPassword: password,
    }).then(function (reply) {
      busy = false;
      if (!reply || reply.stat !== "ok") {
        var code = (reply && reply.error) || "unexpected_error";
        var text =
          code === "invalid_credentials"
            ? "Wrong email or password."
            : code === "invalid_form_fields"
              ? "Please enter your email and password."
              : "Sign-in failed (" + code + ").";
        fire(
          "onCaptureLoginFailed",
          transaction("traditionalSignin", "signIn", "error", code === "invalid_credentials" ? "invalidCredentials" : code, {
            authProvider: "capture",
          }),
        );
        setMessage("signIn", "error", text);
        return;
      }
      var user = reply.capture_user || null;
      var extra = {
        authProvider: "capture",
        keepMeLoggedIn: false,
        oneTime: false,
        userData: user ? { uuid: user.uuid, email: user.email, displayName: user.displayName || "" } : {},
      };
      if (user) storeProfile(user);
      if (mode === "token") {
        if (typeof reply.access_token !== "string") {
          fire("onCaptureLoginFailed", transaction("traditionalSignin", "signIn", "error", "unexpectedResponse"));
          setMessage("signIn", "error", "Sign-in failed (no access token).");
          return;
        }
        createCaptureSession(reply.access_token);
        extra.accessToken = reply.access_token;
      } else {
        if (typeof reply.authorization_code !== "string") {
          fire("onCaptureLoginFailed", transaction("traditionalSignin", "signIn", "error", "unexpectedResponse"));
          setMessage("signIn", "error", "Sign-in failed (no authorization code).");
          return;
        }
        extra.authorizationCode = reply.authorization_code;
      }
      draft = null;
      messages = {};
      renderScreen("editProfile");
      fire("onCaptureLoginSuccess", transaction("traditionalSignin", "signIn", "success", "signedIn", extra));
    });
  }

  // Reads the user record with the stored token, the way the widget loads a profile screen.
  function loadProfile() {
    var token = storedToken();
    if (!token) return Promise.resolve(null);
    return post("/entity", { access_token: token, type_name: setting("typeName", "user") }).then(function (reply) {
      if (reply && reply.stat === "ok" && reply.result) {
        storeProfile(reply.result);
        fire("onCaptureProfileLoadSuccess", transaction("loadProfile", "editProfile", "success", "profileLoaded"));
        return reply.result;
      }
      if (isDeadTokenError(reply) && storedToken() === token) {
        fire("onCaptureInvalidToken", transaction("loadProfile", "editProfile", "error", "invalidToken"));
      }
      return null;
    });
  }

  function saveProfile(values) {
    if (busy) return;
    delete messages.editProfile;
    draft = { displayName: values.displayName };
    var token = storedToken();
    if (!token) {
      fire("onCaptureAccessDenied", transaction("profileSave", "editProfile", "error", "accessDenied"));
      setMessage("editProfile", "error", "You are not signed in.");
      return;
    }
    if (!(storedExpiry() > Date.now())) {
      // The widget's own clock says the session is over: it does not even try.
      fire("onCaptureExpiredToken", transaction("profileSave", "editProfile", "error", "expiredToken"));
      setMessage("editProfile", "error", "Your session expired.");
      return;
    }
    busy = true;
    fire("onCaptureSaveStart", transaction("profileSave", "editProfile", "pending", "saveStart"));
    post("/entity.update", {
      access_token: token,
      type_name: setting("typeName", "user"),
      attributes: JSON.stringify({ displayName: values.displayName }),
    }).then(function (reply) {
      busy = false;
      if (reply && reply.stat === "ok") {
        var profile = storedProfile() || {};
        profile.displayName = values.displayName;
        write("janrainCaptureProfileData", JSON.stringify(profile));
        draft = null;
        messages.editProfile = { kind: "ok", text: "Profile saved." };
        fire("onCaptureSaveSuccess", transaction("profileSave", "editProfile", "success", "profileSaved"));
        if (currentScreen === "editProfile") renderScreen("editProfile");
        return;
      }
      if (isDeadTokenError(reply)) {
        messages.editProfile = { kind: "error", text: "Your session is no longer valid." };
        if (currentScreen === "editProfile") renderScreen("editProfile");
        fire("onCaptureSaveFailed", transaction("profileSave", "editProfile", "error", "invalidAccessToken"));
        return;
      }
      var code = (reply && reply.error) || "unexpected_error";
      messages.editProfile = { kind: "error", text: "Saving failed (" + code + ")." };
      if (currentScreen === "editProfile") renderScreen("editProfile");
      fire("onCaptureSaveFailed", transaction("profileSave", "editProfile", "error", code));
    });
  }

  function start() {
    if (started) return;
    started = true;
    if (localSessionLive()) {
      fire("onCaptureSessionFound", transaction("start", "editProfile", "success", "sessionFound", { accessToken: storedToken() }));
      renderScreen("editProfile");
      loadProfile();
    } else {
      var hadStale = !!storedToken() || !!read(TOKEN_KEY + EXPIRES_SUFFIX);
      clearSession();
      fire("onCaptureSessionNotFound", transaction("start", "signIn", "success", hadStale ? "sessionExpired" : "sessionNotFound"));
      renderScreen("signIn");
    }
  }

  janrain.capture = janrain.capture || {};
  janrain.capture.ui = {
    start: start,
    createCaptureSession: createCaptureSession,
    endCaptureSession: endCaptureSession,
    hasActiveSession: hasActiveSession,
    renderScreen: renderScreen,
    // Stand-in extras (not in the real widget), so a demo or a test can act like a user.
    standIn: {
      signIn: signIn,
      saveProfile: function (displayName) {
        saveProfile({ displayName: String(displayName) });
      },
      currentScreen: function () {
        return currentScreen;
      },
    },
  };

  // The real widget loads asynchronously from a CDN, then runs the hooks and the page's onload.
  function boot() {
    var hooks = settings.beforeJanrainCaptureWidgetOnLoad;
    if (Array.isArray(hooks)) {
      hooks.forEach(function (fn) {
        if (typeof fn !== "function") return;
        try {
          fn();
        } catch (err) {
          console.error("janrain stand-in: a beforeJanrainCaptureWidgetOnLoad hook threw:", err && err.message);
        }
      });
    }
    if (typeof window.janrainCaptureWidgetOnLoad === "function") {
      window.janrainCaptureWidgetOnLoad();
    } else {
      console.warn("janrain stand-in: define window.janrainCaptureWidgetOnLoad and call janrain.capture.ui.start() in it");
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      setTimeout(boot, 0);
    });
  } else {
    setTimeout(boot, 0);
  }
})();
