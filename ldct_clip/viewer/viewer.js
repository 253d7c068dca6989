/* ldct_clip before/after viewer: plain JavaScript and canvas, no network, no library.
 *
 * ldctvStart(root) runs one viewer inside its root element (class "ldctv"), which holds a JSON
 * <script class="ldctv-meta"> and one <script class="ldctv-data"> per pane with one base64 text per slice
 * (int16 little endian, low-byte plane then high-byte plane, zlib/deflate; see ldct_clip/viewer/data.py).
 * Everything it creates is found through root and named with the "ldctv-" prefix, so several viewers can
 * share one page. Slices are inflated with the browser's DecompressionStream("deflate"), the current
 * slice first, then all the others in the background; root.dataset.ready is "1" when all are decoded.
 */
function ldctvStart(root) {
  "use strict";
  const meta = JSON.parse(root.querySelector("script.ldctv-meta").textContent);
  const [Z, Y, X] = meta.shape;
  const N = Y * X;
  const panes = meta.panes;
  const blobs = Array.from(root.querySelectorAll("script.ldctv-data"), (node) => {
    const parts = node.textContent.split(/\s+/).filter(Boolean);
    node.textContent = "";
    return parts;
  });
  const refIndex = panes.findIndex((p) => p.key === meta.reference);
  const presets = Object.keys(meta.metrics || {});
  const cache = new Array(Z);
  const pending = new Array(Z);
  const state = {
    z: 0, level: 0, width: 1, windowName: meta.default_window, zoom: 1, cx: X / 2, cy: Y / 2,
    flipped: false, flipA: Math.min(1, panes.length - 1), flipB: refIndex >= 0 ? refIndex : panes.length - 1,
    preset: presets[0] || null, diff: -1, diffRange: meta.diff_range, cursor: null, drag: null,
  };

  // --- DOM -------------------------------------------------------------------------------------------
  function el(tag, cls, props, children) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    Object.assign(node, props || {});
    for (const child of children || []) node.append(child);
    return node;
  }
  function option(value, text) { return el("option", "", { value: String(value), textContent: text }); }

  const slider = el("input", "ldctv-slider", { type: "range", min: 0, max: Z - 1, step: 1, value: 0 });
  const sliceText = el("span", "ldctv-slice");
  const windowButtons = Object.keys(meta.windows).map((name, i) =>
    el("button", "ldctv-window", { type: "button", textContent: name, title: `${name} window (key ${i + 1})` }));
  windowButtons.forEach((b, i) => { b.dataset.window = Object.keys(meta.windows)[i]; });
  const levelInput = el("input", "ldctv-level", { type: "number", step: 1, title: "window level (centre), HU" });
  const widthInput = el("input", "ldctv-width", { type: "number", step: 1, min: 1, title: "window width, HU" });
  const windowText = el("span", "ldctv-window-range");
  const presetSelect = el("select", "ldctv-preset", { title: "metric preset of the PSNR/SSIM shown" },
    presets.map((p) => option(p, p)));
  const diffSelect = el("select", "ldctv-diff", { title: "difference pane: method minus reference, in HU" },
    [option(-1, "none")].concat(refIndex < 0 ? [] : panes.map((p, i) => i === refIndex ? null
      : option(i, `${p.label} − ${panes[refIndex].label}`)).filter(Boolean)));
  const diffInput = el("input", "ldctv-diff-range",
    { type: "number", min: 1, step: 1, value: meta.diff_range, title: "difference colour range ± HU" });
  const flipA = el("select", "ldctv-flip-a", { title: "flip pane A" }, panes.map((p, i) => option(i, p.label)));
  const flipB = el("select", "ldctv-flip-b", { title: "flip pane B" }, panes.map((p, i) => option(i, p.label)));
  flipA.value = String(state.flipA);
  flipB.value = String(state.flipB);
  const zoomText = el("span", "ldctv-zoom");
  const resetButton = el("button", "ldctv-reset", { type: "button", textContent: "reset view" });
  const cursorText = el("span", "ldctv-cursor");
  const statusText = el("span", "ldctv-status");

  function group(label, children) { return el("span", "ldctv-group", {}, [el("span", "ldctv-name", { textContent: label })].concat(children)); }
  const bar1 = el("div", "ldctv-bar", {}, [
    el("span", "ldctv-title", { textContent: meta.title }), group("slice", [slider]), sliceText]);
  const bar2 = el("div", "ldctv-bar", {}, [
    group("window", windowButtons.concat(["level", levelInput, "width", widthInput, windowText])),
    presets.length ? group("metrics", [presetSelect]) : "",
    refIndex >= 0 ? group("difference", [diffSelect, "±", diffInput, "HU"]) : "",
    group("flip (space)", [flipA, "⇄", flipB]),
    group("", [zoomText, resetButton]),
  ]);
  const paneBox = el("div", "ldctv-panes");
  const help = "wheel / arrow keys / slider: slice · right-drag: window · left-drag: pan · "
    + "ctrl+wheel or +/−: zoom · 0 or double-click: reset · space: flip A⇄B · 1–4: window presets";
  const foot = el("div", "ldctv-bar ldctv-foot", {}, [cursorText, statusText, el("span", "ldctv-help", { textContent: help })]);
  root.append(bar1, bar2, paneBox, foot);
  root.tabIndex = 0;

  const cssWidth = Math.round(meta.pane_px * X / Math.max(X, Y));  // the longer side is pane_px CSS pixels
  const cssHeight = Math.round(cssWidth * Y / X);
  const dpr = window.devicePixelRatio || 1;
  const slots = panes.map((_, i) => makeSlot(i)).concat([makeSlot(-2)]);
  const diffSlot = slots[slots.length - 1];

  function makeSlot(content) {
    const canvas = el("canvas", "ldctv-canvas", { width: Math.round(cssWidth * dpr), height: Math.round(cssHeight * dpr) });
    canvas.style.width = `${cssWidth}px`;
    canvas.style.height = `${cssHeight}px`;
    const label = el("b", "ldctv-label");
    const psnr = el("span", "ldctv-psnr");
    const ssim = el("span", "ldctv-ssim");
    const hu = el("span", "ldctv-hu");
    const figure = el("figure", "ldctv-pane", {}, [canvas, el("figcaption", "", {}, [label, psnr, ssim, hu])]);
    figure.style.width = `${cssWidth}px`;
    paneBox.append(figure);
    const image = new ImageData(X, Y);
    const offscreen = el("canvas", "", { width: X, height: Y });
    const slot = { home: content, figure, canvas, label, psnr, ssim, hu, image, offscreen, values: null };
    bindCanvas(canvas);
    return slot;
  }

  // --- decoding --------------------------------------------------------------------------------------
  async function inflate(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    const planes = new Uint8Array(await new Response(stream).arrayBuffer());
    if (planes.length !== 2 * N) throw new Error(`packed slice holds ${planes.length / 2} values, expected ${N}`);
    const values = new Int16Array(N);
    for (let i = 0; i < N; i++) values[i] = planes[i] | (planes[N + i] << 8);  // int16 store wraps
    return values;
  }
  function loadSlice(z) {
    if (!pending[z]) {
      pending[z] = Promise.all(blobs.map((parts) => inflate(parts[z]))).then((arrays) => {
        cache[z] = arrays;
        blobs.forEach((parts) => { parts[z] = null; });
      });
    }
    return pending[z];
  }

  // --- rendering -------------------------------------------------------------------------------------
  let greyLut = null;
  let diffLut = null;
  function buildGreyLut() {
    const lo = state.level - state.width / 2;
    const lut = new Uint32Array(65536);
    for (let u = 0; u < 65536; u++) {
      const v = (u << 16) >> 16;
      const g = Math.max(0, Math.min(255, Math.round((v - lo) / state.width * 255)));
      lut[u] = 0xff000000 | (g << 16) | (g << 8) | g;
    }
    greyLut = lut;
  }
  function buildDiffLut() {
    const r = state.diffRange;
    const lut = new Uint32Array(2 * r + 1);
    const blue = [33, 102, 172], white = [247, 247, 247], red = [178, 24, 43];
    for (let i = 0; i <= 2 * r; i++) {
      const t = (i - r) / r;
      const [a, b, f] = t < 0 ? [white, blue, -t] : [white, red, t];
      const c = a.map((ai, k) => Math.round(ai + (b[k] - ai) * f));
      lut[i] = 0xff000000 | (c[2] << 16) | (c[1] << 8) | c[0];
    }
    diffLut = lut;
  }
  function contentOf(slot) {
    if (slot.home === -2) return state.diff >= 0 ? -2 : -1;
    if (state.flipped && slot.home === state.flipA) return state.flipB;
    if (state.flipped && slot.home === state.flipB) return state.flipA;
    return slot.home;
  }
  function valuesOf(content, z) {
    const arrays = cache[z];
    if (content !== -2) return arrays[content];
    const method = arrays[state.diff], ref = arrays[refIndex], out = new Int32Array(N);
    for (let i = 0; i < N; i++) out[i] = method[i] - ref[i];
    return out;
  }
  function paint(slot) {
    const content = contentOf(slot);
    slot.figure.hidden = content === -1;
    if (content === -1) return;
    const values = valuesOf(content, state.z);
    const px = new Uint32Array(slot.image.data.buffer);
    if (content === -2) {
      const r = state.diffRange;
      for (let i = 0; i < N; i++) px[i] = diffLut[Math.max(-r, Math.min(r, values[i])) + r];
    } else {
      for (let i = 0; i < N; i++) px[i] = greyLut[values[i] & 0xffff];
    }
    slot.values = values;
    slot.offscreen.getContext("2d").putImageData(slot.image, 0, 0);
    caption(slot, content);
  }
  function caption(slot, content) {
    const flipped = state.flipped && (slot.home === state.flipA || slot.home === state.flipB) && state.flipA !== state.flipB;
    slot.figure.classList.toggle("ldctv-flipped", flipped);
    slot.figure.dataset.key = content === -2 ? "difference" : panes[content].key;
    slot.label.textContent = content === -2 ? `${panes[state.diff].label} − ${panes[refIndex].label}`
      : panes[content].label + (flipped ? " ⇄" : "");
    const m = content >= 0 && state.preset ? (meta.metrics[state.preset] || {})[panes[content].key] : null;
    const reference = content === refIndex;
    slot.psnr.textContent = reference ? "reference" : m ? `PSNR ${m.psnr[state.z] ?? "–"} dB` : "";
    slot.ssim.textContent = m && !reference ? `SSIM ${m.ssim[state.z] ?? "–"}` : "";
  }
  function scale() { return cssWidth / X * state.zoom; }
  function draw() {
    const s = scale() * dpr;
    for (const slot of slots) {
      if (slot.figure.hidden || !slot.values) continue;
      const ctx = slot.canvas.getContext("2d");
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, slot.canvas.width, slot.canvas.height);
      ctx.imageSmoothingEnabled = false;
      ctx.setTransform(s, 0, 0, s, slot.canvas.width / 2 - state.cx * s, slot.canvas.height / 2 - state.cy * s);
      ctx.drawImage(slot.offscreen, 0, 0);
    }
    zoomText.textContent = `zoom ${state.zoom.toFixed(2)}×`;
  }
  function refresh() {
    if (!cache[state.z]) return;
    for (const slot of slots) paint(slot);
    draw();
    readout();
  }
  function readout() {
    const c = state.cursor;
    const inside = c && c.x >= 0 && c.y >= 0 && c.x < X && c.y < Y;
    cursorText.textContent = inside ? `x ${c.x}, y ${c.y}` : "";
    for (const slot of slots) {
      if (slot.figure.hidden || !slot.values) continue;
      const v = inside ? slot.values[c.y * X + c.x] : null;
      slot.hu.textContent = v === null ? "" : `${contentOf(slot) === -2 ? "Δ " : ""}${v} HU`;
    }
  }

  // --- state changes ---------------------------------------------------------------------------------
  function setSlice(z) {
    state.z = Math.max(0, Math.min(Z - 1, Math.round(z)));
    slider.value = String(state.z);
    const s = meta.slices[state.z];
    sliceText.textContent = `${state.z + 1} / ${Z} · index ${s.index} · z ${s.z_mm.toFixed(2)} mm · patient ${s.patient}`;
    root.dataset.slice = String(state.z);
    if (cache[state.z]) refresh();
    else {
      const wanted = state.z;
      loadSlice(wanted).then(() => { if (state.z === wanted) refresh(); }).catch(fail);
    }
  }
  function setWindow(level, width, name) {
    state.level = Math.round(level);
    state.width = Math.max(1, Math.round(width));
    state.windowName = name || null;
    levelInput.value = String(state.level);
    widthInput.value = String(state.width);
    windowText.textContent = `[${state.level - state.width / 2}, ${state.level + state.width / 2}] HU`;
    windowButtons.forEach((b) => b.classList.toggle("ldctv-active", b.dataset.window === state.windowName));
    buildGreyLut();
    refresh();
  }
  function setPreset(name) {
    const [lo, hi] = meta.windows[name];
    setWindow((lo + hi) / 2, hi - lo, name);
  }
  function zoomAt(factor, px, py) {
    const s0 = scale();
    const zoom = Math.max(0.25, Math.min(32, state.zoom * factor));
    if (px !== undefined) {  // keep the image point under the cursor in place
      const ix = state.cx + (px - cssWidth / 2) / s0, iy = state.cy + (py - cssHeight / 2) / s0;
      const s1 = cssWidth / X * zoom;
      state.cx = ix - (px - cssWidth / 2) / s1;
      state.cy = iy - (py - cssHeight / 2) / s1;
    }
    state.zoom = zoom;
    draw();
  }
  function resetView() { state.zoom = 1; state.cx = X / 2; state.cy = Y / 2; draw(); }
  function flip() { state.flipped = !state.flipped; refresh(); }

  // --- input -----------------------------------------------------------------------------------------
  function local(canvas, event) {
    const rect = canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) * cssWidth / rect.width, (event.clientY - rect.top) * cssHeight / rect.height];
  }
  function bindCanvas(canvas) {
    canvas.addEventListener("wheel", (e) => {
      e.preventDefault();
      const delta = e.deltaY || e.deltaX;  // shift+wheel scrolls sideways in some browsers
      if (delta === 0) return;
      if (e.ctrlKey || e.shiftKey) {
        const [px, py] = local(canvas, e);
        zoomAt(delta < 0 ? 1.25 : 0.8, px, py);
      } else setSlice(state.z + Math.sign(delta));
    }, { passive: false });
    canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    canvas.addEventListener("dblclick", resetView);
    canvas.addEventListener("mousedown", (e) => {
      if (e.button !== 0 && e.button !== 2) return;
      e.preventDefault();
      root.focus({ preventScroll: true });
      state.drag = { button: e.button, x: e.clientX, y: e.clientY, level: state.level, width: state.width, cx: state.cx, cy: state.cy };
    });
    canvas.addEventListener("mousemove", (e) => {
      const [px, py] = local(canvas, e);
      const s = scale();
      state.cursor = { x: Math.floor(state.cx + (px - cssWidth / 2) / s), y: Math.floor(state.cy + (py - cssHeight / 2) / s) };
      readout();
    });
    canvas.addEventListener("mouseleave", () => { state.cursor = null; readout(); });
  }
  window.addEventListener("mousemove", (e) => {
    const d = state.drag;
    if (!d) return;
    const dx = e.clientX - d.x, dy = e.clientY - d.y;
    if (d.button === 2) {
      const step = Math.max(1, d.width / 200);
      setWindow(d.level - dy * step, d.width + dx * step, null);
    } else {
      state.cx = d.cx - dx / scale();
      state.cy = d.cy - dy / scale();
      draw();
    }
  });
  window.addEventListener("mouseup", () => { state.drag = null; });

  function onKey(e) {
    const t = e.target;
    if (t.tagName === "SELECT" || (t.tagName === "INPUT" && t.type !== "range")) return;
    const native = t === slider && ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "PageUp", "PageDown", "Home", "End"].includes(e.key);
    if (native || e.altKey || e.metaKey || e.ctrlKey) return;
    const names = Object.keys(meta.windows);
    const actions = {
      ArrowDown: () => setSlice(state.z + 1), ArrowRight: () => setSlice(state.z + 1),
      ArrowUp: () => setSlice(state.z - 1), ArrowLeft: () => setSlice(state.z - 1),
      PageDown: () => setSlice(state.z + 10), PageUp: () => setSlice(state.z - 10),
      Home: () => setSlice(0), End: () => setSlice(Z - 1), " ": flip,
      "+": () => zoomAt(1.25), "=": () => zoomAt(1.25), "-": () => zoomAt(0.8), "0": resetView,
    };
    names.forEach((name, i) => { actions[String(i + 1)] = () => setPreset(name); });
    if (!actions[e.key]) return;
    e.preventDefault();
    actions[e.key]();
  }
  root.addEventListener("keydown", onKey);
  if (meta.standalone) document.addEventListener("keydown", (e) => { if (e.target === document.body) onKey(e); });
  slider.addEventListener("input", () => setSlice(Number(slider.value)));
  windowButtons.forEach((b) => b.addEventListener("click", () => setPreset(b.dataset.window)));
  const typedWindow = () => setWindow(Number(levelInput.value), Number(widthInput.value), null);
  levelInput.addEventListener("change", typedWindow);
  widthInput.addEventListener("change", typedWindow);
  presetSelect.addEventListener("change", () => { state.preset = presetSelect.value; refresh(); });
  diffSelect.addEventListener("change", () => { state.diff = Number(diffSelect.value); refresh(); });
  diffInput.addEventListener("change", () => {
    state.diffRange = Math.max(1, Math.round(Number(diffInput.value)) || meta.diff_range);
    diffInput.value = String(state.diffRange);
    buildDiffLut();
    refresh();
  });
  flipA.addEventListener("change", () => { state.flipA = Number(flipA.value); refresh(); });
  flipB.addEventListener("change", () => { state.flipB = Number(flipB.value); refresh(); });
  resetButton.addEventListener("click", resetView);
  for (const b of windowButtons.concat([resetButton])) b.addEventListener("mousedown", (e) => e.preventDefault());  // keep keys on root

  // --- start -----------------------------------------------------------------------------------------
  function fail(error) {
    root.dataset.error = String(error && error.message || error);
    statusText.textContent = `viewer error: ${root.dataset.error}`;
    statusText.classList.add("ldctv-error");
    console.error("ldct_clip viewer:", error);
  }
  if (meta.encoding !== "int16le-planes-deflate-base64" || blobs.length !== panes.length
      || blobs.some((parts) => parts.length !== Z)) {
    fail(new Error(`page data does not match its description (${meta.encoding}, ${panes.length} panes × ${Z} slices)`));
    return;
  }
  if (typeof DecompressionStream !== "function") {
    fail(new Error("this browser lacks DecompressionStream; open the page in Chromium ≥ 80 or Firefox ≥ 113"));
    return;
  }
  buildDiffLut();
  setPreset(meta.default_window);
  setSlice(0);
  if (meta.standalone) root.focus({ preventScroll: true });
  (async () => {
    for (let z = 0; z < Z; z++) {
      statusText.textContent = `decoding slice ${z + 1} / ${Z}`;
      await loadSlice(z);
    }
    statusText.textContent = `${Z} slices × ${panes.length} panes, HU to 1 HU`;
    root.dataset.loadMs = String(Math.round(performance.now()));
    root.dataset.ready = "1";
  })().catch(fail);
}
