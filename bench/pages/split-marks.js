/*
 * Init script of the instrumented start-up loads (the ones whose URL carries
 * split=1; every other load runs without it). It stamps performance.now() where
 * capture-session's start-up passes from one phase to the next, without
 * touching the files measured: it wraps the browser APIs the helper calls.
 *   script tag: document.currentScript read (the tag's own code starts, after
 *     the glue's top level), new WebAssembly.Module (sync compile; called right
 *     after the embedded wasm is decoded), new WebAssembly.Instance, and
 *     window.CaptureSession being set (after initSync, just before attach()).
 *   ESM package: WebAssembly.instantiateStreaming called / resolved.
 * The wrappers cost a function call and a performance.now() each (about a
 * microsecond); the harness reports the instrumented totals next to the plain
 * ones, so any disturbance shows.
 * Marks land in window.__marks as { name: ms }; the first of each name counts.
 */
(function () {
  "use strict";
  if (!/[?&]split=1(&|$)/.test(location.search)) return;
  var marks = (window.__marks = {});
  var now = performance.now.bind(performance);
  function mark(name) {
    if (!(name in marks)) marks[name] = now();
  }
  var W = WebAssembly;
  var Module = W.Module;
  var Instance = W.Instance;
  var instantiateStreaming = W.instantiateStreaming;
  function WrappedModule(bytes) {
    mark("compile-start");
    var m = new Module(bytes);
    mark("compile-end");
    return m;
  }
  WrappedModule.prototype = Module.prototype;
  WrappedModule.imports = Module.imports;
  WrappedModule.exports = Module.exports;
  WrappedModule.customSections = Module.customSections;
  W.Module = WrappedModule;
  function WrappedInstance(module, imports) {
    mark("instantiate-start");
    var i = new Instance(module, imports);
    mark("instantiate-end");
    return i;
  }
  WrappedInstance.prototype = Instance.prototype;
  W.Instance = WrappedInstance;
  if (instantiateStreaming) {
    W.instantiateStreaming = function (source, imports) {
      mark("streaming-start");
      return instantiateStreaming.call(W, source, imports).then(function (r) {
        mark("streaming-end");
        return r;
      });
    };
  }
  var current = Object.getOwnPropertyDescriptor(Document.prototype, "currentScript");
  Object.defineProperty(Document.prototype, "currentScript", {
    configurable: true,
    enumerable: current.enumerable,
    get: function () {
      var s = current.get.call(this);
      if (s && /capture-session\.js/.test(s.src || "")) mark("tag-running");
      return s;
    },
  });
  Object.defineProperty(window, "CaptureSession", {
    configurable: true,
    enumerable: false,
    get: function () {
      return undefined;
    },
    set: function (v) {
      mark("exposed");
      Object.defineProperty(window, "CaptureSession", { value: v, writable: true, configurable: true, enumerable: true });
    },
  });
})();
