// convscope live viewer. Plain JavaScript, no dependencies, no build step.
// Security: every model- or file-derived string is written with textContent or as an attribute
// value, never as HTML; images and layers are named only by the IDs the server handed out.
(function () {
  "use strict";

  var PER_PAGE = 64;
  var $ = function (id) { return document.getElementById(id); };
  var state = {
    model: null, images: [], layers: [], imageId: null, layerId: null, summary: null,
    page: 0, slice: null, channel: null, unetFor: null, filter: "", kernelZoom: 0
  };
  var layerRequest = 0;

  // -- helpers -----------------------------------------------------------------------------------
  function enc(id) { return encodeURIComponent(id); }

  function showError(message) {
    var box = $("error");
    if (!message) { box.hidden = true; box.textContent = ""; return; }
    box.textContent = message;
    box.hidden = false;
  }

  function api(path, options) {
    return fetch(path, Object.assign({ credentials: "same-origin" }, options || {})).then(function (response) {
      var type = response.headers.get("content-type") || "";
      var body = type.indexOf("application/json") !== -1 ? response.json() : Promise.resolve(null);
      return body.then(function (data) {
        if (!response.ok) {
          var err = new Error((data && data.error && data.error.message) || ("HTTP " + response.status));
          err.status = response.status;
          err.code = data && data.error && data.error.code;
          throw err;
        }
        return data;
      });
    });
  }

  function fmt(value) {
    if (value === null || value === undefined) { return "-"; }
    if (typeof value !== "number") { return String(value); }
    if (value === 0) { return "0"; }
    var a = Math.abs(value);
    return (a < 1e-3 || a >= 1e5) ? value.toExponential(3) : String(Number(value.toPrecision(4)));
  }

  function pct(value) {
    if (value === null || value === undefined) { return "-"; }
    var v = value * 100;
    if (v === 0) { return "0%"; }
    return v < 0.01 ? "<0.01%" : (v < 10 ? v.toFixed(2) : v.toFixed(1)) + "%";
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  function setStats(dl, rows) {
    clear(dl);
    rows.forEach(function (row) {
      var dt = document.createElement("dt");
      dt.textContent = row[0];
      var dd = document.createElement("dd");
      dd.textContent = row[1];
      if (row[2]) { dd.className = "warn"; }
      dl.appendChild(dt);
      dl.appendChild(dd);
    });
  }

  function currentLayer() {
    for (var i = 0; i < state.layers.length; i++) {
      if (state.layers[i].id === state.layerId) { return state.layers[i]; }
    }
    return null;
  }

  function sliceQuery() { return state.slice === null ? "" : "?slice=" + state.slice; }

  function channelUrl(channel, what) {
    return "/api/images/" + enc(state.imageId) + "/layers/" + enc(state.layerId) + "/channels/" + channel + "/" + what + ".png" + sliceQuery();
  }

  // -- images ------------------------------------------------------------------------------------
  function fillImages() {
    var select = $("image-select");
    clear(select);
    if (!state.images.length) {
      var none = document.createElement("option");
      none.textContent = "(no images yet: upload one)";
      none.value = "";
      select.appendChild(none);
      select.disabled = true;
      return;
    }
    select.disabled = false;
    state.images.forEach(function (image) {
      var option = document.createElement("option");
      option.value = image.id;
      option.textContent = image.name + (image.origin === "upload" ? " (uploaded)" : "");
      select.appendChild(option);
    });
    if (state.imageId) { select.value = state.imageId; }
  }

  function loadImages() {
    return api("/api/images").then(function (data) {
      state.images = data.images;
      fillImages();
    });
  }

  function imageById(imageId) {
    return state.images.filter(function (i) { return i.id === imageId; })[0];
  }

  function setBusy(busy, label) {
    var main = $("main");
    main.setAttribute("aria-busy", busy ? "true" : "false");
    document.body.classList.toggle("busy", !!busy);
    $("busy").hidden = !busy;
    $("busy").textContent = busy ? label : "";
  }

  function showNotes(image) {
    var notes = $("image-notes");
    notes.textContent = image && image.notes && image.notes.length ? "Input " + image.notes.join("; ") + "." : "";
  }

  function selectImage(imageId) {
    state.imageId = imageId || null;
    $("image-select").value = imageId || "";
    var preview = $("input-preview");
    if (!imageId) { preview.hidden = true; return Promise.resolve(); }
    var image = imageById(imageId);
    // never show the previous image's views under the new image's name: clear them first
    state.summary = null;
    clear($("channel-grid"));
    setStats($("health"), []);
    $("pager").hidden = true;
    $("unet").hidden = true;
    $("predictions").hidden = true;
    $("cam").hidden = true;
    cam.output = null;
    var volumeCam = $("volume-cam");
    while (volumeCam.options.length > 1) { volumeCam.remove(1); }
    volumeCam.value = "";
    closeDetail();
    setBusy(true, "Computing the activations of " + (image ? image.name : "the image") + "…");
    preview.src = "/api/images/" + enc(imageId) + "/input.png";
    preview.alt = "Input image " + (image ? image.name : "");
    preview.hidden = false;
    showNotes(image);
    var done = function () { if (state.imageId === imageId) { setBusy(false); } };
    return loadLayer().then(loadPredictions).then(function () {
      return loadImages().then(function () { if (state.imageId === imageId) { showNotes(imageById(imageId)); } });
    }).then(loadUNet).then(loadCam).then(loadVolume).then(done, function (err) { done(); throw err; });
  }

  // -- predictions (classifiers) -----------------------------------------------------------------
  function loadPredictions() {
    var section = $("predictions");
    if (!state.imageId) { section.hidden = true; return Promise.resolve(); }
    var imageId = state.imageId;
    return api("/api/images/" + enc(imageId) + "/predictions").then(function (p) {
      if (state.imageId !== imageId) { return; }
      if (p.kind === "map") { cam.output = p.shape; }
      if (p.kind !== "classes") { section.hidden = true; return; }
      if (state.model) { state.model.unet = false; }  // a classifier: no U-Net view to ask for
      var list = $("prediction-list");
      clear(list);
      p.top.forEach(function (row) {
        var item = document.createElement("li");
        var bar = document.createElement("span");
        bar.className = "bar";
        bar.style.width = Math.max(1, Math.round(row.probability * 100)) + "%";
        var text = document.createElement("span");
        text.textContent = "class " + row.index + ": " + pct(row.probability);
        item.appendChild(text);
        item.appendChild(bar);
        item.appendChild(predictionCam(imageId, row.index));
        list.appendChild(item);
      });
      $("prediction-note").textContent = "Top " + p.top.length + " of " + p.classes + " classes" +
        (p.softmax ? " (probabilities: softmax of the model's scores)" : " (the model's own probabilities)");
      section.hidden = false;
    }).catch(function (err) { showError(err.message); });
  }

  // a CAM of one predicted class (the last convolution), next to its probability
  function predictionCam(imageId, cls) {
    var figure = document.createElement("figure");
    figure.className = "prediction-cam";
    figure.hidden = true;
    var img = document.createElement("img");
    figure.appendChild(img);
    // the description is the picture's alt text and tooltip, so the list item's text stays "class K: P%"
    api("/api/images/" + enc(imageId) + "/cam?cls=" + cls).then(function (data) {
      if (state.imageId !== imageId || !data.maps.length) { return; }
      var m = data.maps[0];
      img.src = m.url;
      img.alt = data.method + " for class " + cls + " at " + m.layer;
      img.title = img.alt + (m.notes.length ? " (" + m.notes[0] + ")" : "") + "; 1 = the map's maximum";
      img.setAttribute("data-cam-class", String(cls));
      figure.hidden = false;
    }).catch(function (err) {
      if (err.code !== "no_gradients") { figure.title = "no CAM: " + err.message; }
    });
    return figure;
  }

  // -- CAMs of a segmentation output: click a pixel or drag a box, pick a class ------------------------
  var cam = { output: null, cls: null, pixel: null, box: null, request: 0, drag: null };

  function camQuery() {
    var q = "method=" + enc($("cam-method").value);
    if (cam.cls !== null) { q += "&cls=" + cam.cls; }
    if (cam.pixel) { q += "&pixel=" + cam.pixel.join(","); }
    if (cam.box) { q += "&box=" + cam.box.join(","); }
    return q;
  }

  function loadCam() {
    var section = $("cam");
    if (!state.imageId || !cam.output) { section.hidden = true; return Promise.resolve(); }
    var imageId = state.imageId;
    if (cam.for !== imageId) {  // a new image: fill the class list, reset the region
      cam.for = imageId;
      cam.cls = null; cam.pixel = null; cam.box = null;
      var select = $("cam-class");
      clear(select);
      var classes = cam.output[0];
      var first = document.createElement("option");
      first.value = "";
      first.textContent = classes > 1 ? "predicted class (per pixel)" : "class 0";
      select.appendChild(first);
      for (var k = 0; k < classes && classes > 1 && k < 256; k += 1) {
        var option = document.createElement("option");
        option.value = String(k);
        option.textContent = "class " + k;
        select.appendChild(option);
      }
      $("cam-input").src = "/api/images/" + enc(imageId) + "/input.png";
      $("cam-box").hidden = true;
    }
    var request = ++cam.request;
    $("cam-meta").textContent = "computing the maps\u2026";
    return api("/api/images/" + enc(imageId) + "/cam?" + camQuery()).then(function (data) {
      if (request !== cam.request || state.imageId !== imageId) { return; }
      renderCam(data);
    }).catch(function (err) {
      if (request !== cam.request) { return; }
      if (err.code === "no_gradients") { section.hidden = true; return; }
      $("cam-meta").textContent = err.message;
      section.hidden = false;
    });
  }

  function renderCam(data) {
    var t = data.target || {};
    var region = t.region;
    var where = typeof region === "string" ? region : Object.keys(region || {}).map(function (k) {
      return k + " " + JSON.stringify(region[k]);
    }).join(", ");
    $("cam-meta").textContent = data.method + " for class " + t["class"] + " (" + t.reduce + " of the " + t.score +
      " over " + where + "), from " + data.output_tensor + "; " + data.scale + "; " + data.passes.forward +
      " forward + " + data.passes.backward + " backward pass";
    var box = $("cam-maps");
    clear(box);
    data.maps.forEach(function (m) {
      var figure = document.createElement("figure");
      var img = document.createElement("img");
      img.src = m.url;
      img.alt = data.method + " at " + m.role + " (" + m.layer + ")";
      img.setAttribute("data-role", m.role);
      var caption = document.createElement("figcaption");
      caption.textContent = m.role + (m.role !== m.layer ? " \u00b7 " + m.layer : "") + (m.notes.length ? " \u2014 " + m.notes[0] : "");
      figure.appendChild(img);
      figure.appendChild(caption);
      box.appendChild(figure);
    });
    var volumeCam = $("volume-cam");  // 3D inputs: any of these maps can be drawn on the three planes
    var chosen = volumeCam.value;
    while (volumeCam.options.length > 1) { volumeCam.remove(1); }
    data.maps.forEach(function (m) {
      var option = document.createElement("option");
      option.value = String(m.index);
      option.textContent = m.role;
      volumeCam.appendChild(option);
    });
    volumeCam.value = chosen !== "" && chosen < data.maps.length ? chosen : "";
    if (volume.info) { renderVolume(); }
    Object.keys(data.missing || {}).forEach(function (role) {
      var note = document.createElement("p");
      note.className = "hint";
      note.textContent = "no map for " + role + ": " + data.missing[role];
      box.appendChild(note);
    });
    $("cam").hidden = false;
  }

  // output pixel under a pointer event: the picture shows the input, scaled to the output's grid
  function camPoint(event) {
    var img = $("cam-input");
    var rect = img.getBoundingClientRect();
    var h = cam.output[cam.output.length - 2], w = cam.output[cam.output.length - 1];
    var fx = Math.min(Math.max((event.clientX - rect.left) / rect.width, 0), 0.999999);
    var fy = Math.min(Math.max((event.clientY - rect.top) / rect.height, 0), 0.999999);
    return { x: Math.floor(fx * w), y: Math.floor(fy * h), px: event.clientX - rect.left, py: event.clientY - rect.top };
  }

  function drawCamBox(a, b) {
    var el = $("cam-box");
    var img = $("cam-input");
    var rect = img.getBoundingClientRect();
    var h = cam.output[cam.output.length - 2], w = cam.output[cam.output.length - 1];
    var x0 = Math.min(a.x, b.x), y0 = Math.min(a.y, b.y), x1 = Math.max(a.x, b.x) + 1, y1 = Math.max(a.y, b.y) + 1;
    el.style.left = (x0 / w * rect.width) + "px";
    el.style.top = (y0 / h * rect.height) + "px";
    el.style.width = Math.max(2, (x1 - x0) / w * rect.width) + "px";
    el.style.height = Math.max(2, (y1 - y0) / h * rect.height) + "px";
    el.hidden = false;
    return [x0, y0, x1, y1];
  }

  function bindCam() {
    var pick = document.querySelector(".cam-pick");
    pick.addEventListener("pointerdown", function (event) {
      if (!cam.output) { return; }
      event.preventDefault();
      cam.drag = camPoint(event);
      if (pick.setPointerCapture) { pick.setPointerCapture(event.pointerId); }
    });
    pick.addEventListener("pointermove", function (event) {
      if (cam.drag) { drawCamBox(cam.drag, camPoint(event)); }
    });
    pick.addEventListener("pointerup", function (event) {
      if (!cam.drag) { return; }
      var start = cam.drag;
      var end = camPoint(event);
      cam.drag = null;
      var moved = Math.abs(end.px - start.px) + Math.abs(end.py - start.py) > 4;
      var depth = cam.output.length === 4 ? cam.output[1] : null;  // 3D: the middle slice is shown
      if (moved && depth === null) {
        cam.box = drawCamBox(start, end);
        cam.pixel = null;
      } else {
        drawCamBox(end, end);
        cam.pixel = depth === null ? [end.y, end.x] : [Math.floor(depth / 2), end.y, end.x];
        cam.box = null;
      }
      loadCam();
    });
    $("cam-class").addEventListener("change", function () {
      cam.cls = this.value === "" ? null : parseInt(this.value, 10);
      loadCam();
    });
    $("cam-method").addEventListener("change", function () { loadCam(); });
    $("volume-cam").addEventListener("change", function () { renderVolume(); });
    $("cam-whole").addEventListener("click", function () {
      cam.pixel = null; cam.box = null;
      $("cam-box").hidden = true;
      loadCam();
    });
  }

  // -- scans: three linked planes, one slice image per request (lazy) ------------------------------
  var PLANES = ["axial", "coronal", "sagittal"];
  var volume = { info: null, imageId: null, point: null, timer: null };

  function planeFigure(plane) { return document.querySelector("#volume figure[data-plane='" + plane + "']"); }

  function loadVolume() {
    var imageId = state.imageId;
    var threeD = state.model && state.model.input && state.model.input.spatial_dims === 3;
    if (!imageId || !threeD) { $("volume").hidden = true; return Promise.resolve(); }  // planes only for 3D models
    return api("/api/images/" + enc(imageId) + "/volume").then(function (info) {
      if (imageId !== state.imageId) { return; }
      volume.info = info;
      volume.imageId = imageId;
      volume.point = info.point.slice();
      var d = info.describe;
      $("volume-meta").textContent = info.shape.join(" x ") + " voxels of " +
        info.spacing_mm.map(function (v) { return fmt(v); }).join(" x ") + " mm, stored " + d.volume.stored_orientation +
        " (shown RAS+); display window " + d.window_applied + "; model intensity " + d.intensity;
      PLANES.forEach(function (plane) {
        var fig = planeFigure(plane);
        var slider = fig.querySelector("input[type=range]");
        slider.max = String(info.counts[plane] - 1);
        var edges = info.edges[plane];
        ["left", "right", "top", "bottom"].forEach(function (edge) {
          fig.querySelector(".edge-" + edge).textContent = edges[edge];
        });
      });
      $("volume").hidden = false;
      renderVolume();
    }).catch(function () { $("volume").hidden = true; volume.info = null; });
  }

  function sliceOf(plane) {
    var p = volume.point;
    return plane === "axial" ? p[2] : plane === "coronal" ? p[1] : p[0];
  }

  function renderVolume() {
    if (!volume.info || volume.imageId !== state.imageId) { return; }
    var info = volume.info, X = info.shape[0], Y = info.shape[1], Z = info.shape[2], p = volume.point;
    var mip = $("volume-mip").checked;
    var params = [];
    var camMap = $("volume-cam").value;
    if (camMap !== "") {
      params.push(camQuery());
      params.push("cam_map=" + enc(camMap));
      params.push("opacity=" + enc($("volume-opacity").value));
    } else if ($("volume-overlay").checked && state.layerId) {
      params.push("layer=" + enc(state.layerId));
      params.push("opacity=" + enc($("volume-opacity").value));
    }
    if (mip) { params.push("mip=true"); }
    var query = params.length ? "?" + params.join("&") : "";
    // crosshair position (fraction of the image) of the other two planes, radiological view
    var cross = {
      axial: [(X - 1 - p[0] + 0.5) / X, (Y - 1 - p[1] + 0.5) / Y],
      coronal: [(X - 1 - p[0] + 0.5) / X, (Z - 1 - p[2] + 0.5) / Z],
      sagittal: [(Y - 1 - p[1] + 0.5) / Y, (Z - 1 - p[2] + 0.5) / Z]
    };
    PLANES.forEach(function (plane) {
      var fig = planeFigure(plane), index = sliceOf(plane);
      var img = fig.querySelector("img");
      var src = "/api/images/" + enc(state.imageId) + "/volume/" + plane + "/" + index + ".png" + query;
      if (img.getAttribute("src") !== src) { img.src = src; }
      img.alt = plane + (mip ? " maximum projection" : " slice " + index);
      fig.querySelector("input[type=range]").value = String(index);
      fig.querySelector("output").textContent = mip ? "max projection" : index + " / " + (info.counts[plane] - 1);
      fig.querySelector(".cross-v").style.left = (cross[plane][0] * 100) + "%";
      fig.querySelector(".cross-h").style.top = (cross[plane][1] * 100) + "%";
    });
  }

  function scheduleVolume() {
    clearTimeout(volume.timer);
    volume.timer = setTimeout(renderVolume, 80);
  }

  function bindVolume() {
    PLANES.forEach(function (plane) {
      var fig = planeFigure(plane);
      fig.querySelector("input[type=range]").addEventListener("input", function () {
        if (!volume.point) { return; }
        var axis = plane === "axial" ? 2 : plane === "coronal" ? 1 : 0;
        volume.point[axis] = Number(this.value);
        scheduleVolume();
      });
      fig.querySelector(".plane-box").addEventListener("click", function (event) {
        if (!volume.info) { return; }
        var rect = fig.querySelector("img").getBoundingClientRect();
        var fx = Math.min(0.999, Math.max(0, (event.clientX - rect.left) / rect.width));
        var fy = Math.min(0.999, Math.max(0, (event.clientY - rect.top) / rect.height));
        var s = volume.info.shape, p = volume.point;
        if (plane === "axial") { p[0] = s[0] - 1 - Math.floor(fx * s[0]); p[1] = s[1] - 1 - Math.floor(fy * s[1]); }
        else if (plane === "coronal") { p[0] = s[0] - 1 - Math.floor(fx * s[0]); p[2] = s[2] - 1 - Math.floor(fy * s[2]); }
        else { p[1] = s[1] - 1 - Math.floor(fx * s[1]); p[2] = s[2] - 1 - Math.floor(fy * s[2]); }
        renderVolume();
      });
    });
    $("volume-overlay").addEventListener("change", renderVolume);
    $("volume-mip").addEventListener("change", renderVolume);
    $("volume-opacity").addEventListener("input", scheduleVolume);
  }

  function upload(event) {
    event.preventDefault();
    var input = $("upload-input");
    var status = $("upload-status");
    if (!input.files || !input.files.length) { status.textContent = "Choose a file first."; return; }
    var file = input.files[0];
    var limit = state.model && state.model.limits ? state.model.limits.max_upload_bytes : null;
    if (limit && file.size > limit) { status.textContent = "The file is larger than the limit of " + limit + " bytes."; return; }
    var form = new FormData();
    form.append("file", file, file.name);
    status.textContent = "Uploading " + file.name + "…";
    $("upload-button").disabled = true;
    api("/api/images", { method: "POST", body: form }).then(function (image) {
      status.textContent = "Uploaded " + image.name + (image.notes && image.notes.length ? ": " + image.notes.join("; ") : "") + ".";
      input.value = "";
      return loadImages().then(function () { return selectImage(image.id); });
    }).catch(function (err) {
      status.textContent = "Upload refused: " + err.message;
    }).then(function () { $("upload-button").disabled = false; });
  }

  // -- layers ------------------------------------------------------------------------------------
  function fillLayers() {
    var select = $("layer-select");
    clear(select);
    var kinds = state.layers.map(function (l) { return l.kind; });
    var matches = window.convscopeLayerMatcher(state.filter, kinds);  // layer-filter.js: globs and kinds
    state.layers.forEach(function (layer) {
      if (!matches(layer.name, layer.kind)) { return; }
      var option = document.createElement("option");
      option.value = layer.id;
      option.textContent = layer.name + "  (" + layer.kind + ")";
      option.title = layer.name;
      select.appendChild(option);
    });
    if (state.layerId) { select.value = state.layerId; }
  }

  function visibleLayerIds() {
    return Array.prototype.map.call($("layer-select").options, function (o) { return o.value; });
  }

  function selectLayer(layerId) {
    if (!layerId || layerId === state.layerId) { return Promise.resolve(); }
    state.layerId = layerId;
    state.page = 0;
    state.slice = null;
    $("layer-select").value = layerId;
    closeDetail();
    loadKernels();
    renderVolume();
    return loadLayer();
  }

  function stepLayer(delta) {
    var ids = visibleLayerIds();
    if (!ids.length) { return; }
    var index = ids.indexOf(state.layerId);
    var next = index === -1 ? 0 : Math.min(ids.length - 1, Math.max(0, index + delta));
    selectLayer(ids[next]);
  }

  function loadLayer() {
    var layer = currentLayer();
    $("layer-title").textContent = layer ? layer.name : "Choose a layer";
    if (!layer || !state.imageId) {
      clear($("channel-grid"));
      $("layer-meta").textContent = state.imageId ? "" : "Upload an image or choose one to see its activations.";
      return Promise.resolve();
    }
    var ticket = ++layerRequest;
    $("layer-meta").textContent = "Computing…";
    return api("/api/images/" + enc(state.imageId) + "/layers/" + enc(state.layerId)).then(function (summary) {
      if (ticket !== layerRequest) { return; }
      state.summary = summary;
      showError("");
      renderSummary();
      renderGrid();
    }).catch(function (err) {
      if (ticket !== layerRequest) { return; }
      state.summary = null;
      clear($("channel-grid"));
      $("layer-meta").textContent = "";
      showError(err.message);
    });
  }

  // the slider's text: which axis a 3-D map's slices run along (a scan: axial z, radiological view)
  function sliceText(s, k) {
    var axis = s && s.slice_axis ? s.slice_axis : "D (first spatial axis)";
    var name = axis.split(" ")[0];
    var plane = name === "z" ? " (axial, radiological: patient left on the right)" : " (H×W plane)";
    return name + " = " + k + " of 0–" + ((s && s.slices ? s.slices : 1) - 1) + plane;
  }

  function renderSummary() {
    var s = state.summary, layer = s.layer, h = s.health;
    $("layer-meta").textContent = layer.type + " · " + layer.kind + " · activation " + s.shape.join("×");
    var rule = h.saturation_rule === "bounds" ? "at the bounds " + fmt(h.bounds[0]) + "…" + fmt(h.bounds[1]) : "beyond mean ± 6 std";
    setStats($("health"), [
      ["Zeros", pct(h.zero_fraction)],
      ["Dead channels", h.dead_count + " of " + s.channels, h.dead_count > 0],
      ["Saturation", pct(h.saturation) + " (" + rule + ")"],
      ["Mean / std", fmt(h.mean) + " / " + fmt(h.std)]
    ]);
    var control = $("slice-control");
    if (s.slices) {
      var slider = $("slice-slider");
      slider.max = String(s.slices - 1);
      if (state.slice === null || state.slice >= s.slices) {
        state.slice = s.slice_middle !== undefined && s.slice_middle !== null ? s.slice_middle : Math.floor(s.slices / 2);
      }
      slider.value = String(state.slice);
      $("slice-value").textContent = sliceText(s, state.slice);
      control.hidden = false;
    } else {
      state.slice = null;
      control.hidden = true;
    }
  }

  function renderGrid() {
    var s = state.summary;
    var grid = $("channel-grid");
    clear(grid);
    if (!s) { return; }
    grid.setAttribute("data-image", state.imageId);
    grid.setAttribute("data-layer", state.layerId);
    var pages = Math.ceil(s.channels / PER_PAGE);
    state.page = Math.min(state.page, pages - 1);
    var start = state.page * PER_PAGE, end = Math.min(s.channels, start + PER_PAGE);
    $("pager").hidden = pages <= 1;
    $("page-info").textContent = "Channels " + start + "–" + (end - 1) + " of " + s.channels;
    $("page-prev").disabled = state.page === 0;
    $("page-next").disabled = state.page >= pages - 1;
    for (var c = start; c < end; c++) {
      var li = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "channel";
      button.setAttribute("data-channel", String(c));
      var img = document.createElement("img");
      img.src = channelUrl(c, "thumb");
      img.alt = "Channel " + c;
      img.loading = "lazy";
      img.className = "pixelated";
      var label = document.createElement("span");
      label.className = "idx";
      label.setAttribute("aria-hidden", "true");
      label.textContent = String(c);
      button.appendChild(img);
      button.appendChild(label);
      if (s.health.dead_channels.indexOf(c) !== -1) { button.classList.add("dead"); }
      li.appendChild(button);
      grid.appendChild(li);
    }
  }

  function channelStats(c) {
    var st = state.summary.channel_stats;
    return [
      ["Channel", String(c)],
      ["Min / max", fmt(st.min[c]) + " / " + fmt(st.max[c])],
      ["Mean / std", fmt(st.mean[c]) + " / " + fmt(st.std[c])],
      ["Zeros", pct(st.zero_fraction[c])]
    ];
  }

  function showTooltip(button) {
    if (!state.summary) { return; }
    var c = Number(button.getAttribute("data-channel"));
    var tip = $("tooltip");
    clear(tip);
    channelStats(c).forEach(function (row) {
      var line = document.createElement("div");
      var key = document.createElement("strong");
      key.textContent = row[0] + ": ";
      line.appendChild(key);
      line.appendChild(document.createTextNode(row[1]));
      tip.appendChild(line);
    });
    var rect = button.getBoundingClientRect();
    var host = $("layer-view").getBoundingClientRect();
    tip.style.left = Math.max(0, rect.left - host.left) + "px";
    tip.style.top = (rect.bottom - host.top + 4) + "px";
    tip.hidden = false;
    button.setAttribute("aria-describedby", "tooltip");
  }

  function hideTooltip(button) {
    $("tooltip").hidden = true;
    if (button) { button.removeAttribute("aria-describedby"); }
  }

  function openDetail(c) {
    state.channel = c;
    var layer = currentLayer();
    var name = layer ? layer.name : "";
    $("detail-title").textContent = name + " · channel " + c + (state.slice !== null ? " · H×W plane at depth D = " + state.slice : "");
    var map = $("detail-map"), overlay = $("detail-overlay");
    map.src = channelUrl(c, "map");
    map.alt = "Full-resolution activation map of channel " + c + " of layer " + name;
    if (state.summary && state.summary.spatial_dims >= 2) {
      overlay.src = channelUrl(c, "overlay");
      overlay.alt = "Channel " + c + " of layer " + name + " blended over the input image";
      overlay.parentNode.hidden = false;
    } else {
      overlay.removeAttribute("src");
      overlay.parentNode.hidden = true;
    }
    setStats($("detail-stats"), channelStats(c));
    showScanCard(layer, c);
    var detail = $("detail");
    detail.hidden = false;
    detail.scrollIntoView({ block: "nearest" });
    detail.focus({ preventScroll: true });
  }

  // with `serve --scan DIR`: the channel card of the dataset scan (404 when absent: stays hidden)
  function showScanCard(layer, c) {
    var fig = $("detail-scan-figure"), img = $("detail-scan");
    if (!fig || !img || !layer) { return; }
    fig.hidden = true;
    img.onload = function () { fig.hidden = false; };
    img.onerror = function () { fig.hidden = true; };
    img.alt = "Dataset examples of channel " + c + " of layer " + layer.name;
    img.src = "/api/scan/layers/" + enc(layer.id) + "/channels/" + c + "/card.png";
  }

  function closeDetail() {
    var detail = $("detail");
    if (detail.hidden) { return; }
    var channel = state.channel;
    detail.hidden = true;
    state.channel = null;
    var button = channel === null ? null : document.querySelector('#channel-grid button[data-channel="' + Number(channel) + '"]');
    if (button) { button.focus(); }
  }

  // -- kernels -----------------------------------------------------------------------------------
  // Zoom of the kernel picture (an O x I matrix of 1x1 / 2x2 kernels can hold thousands of weights):
  // 0 = fitted to the page, else whole multiples of the PNG's own pixels (nearest neighbour, sharp).
  var KERNEL_MAX_PX = 16384;
  var KERNEL_MAX_FACTOR = 32;
  function canDouble(natural, factor) { return factor * 2 <= KERNEL_MAX_FACTOR && natural * factor * 2 <= KERNEL_MAX_PX; }
  function setKernelZoom(factor) {
    var img = $("kernel-img");
    var frame = $("kernel-frame");
    var natural = img.naturalWidth || 0;
    if (!natural) { factor = 0; }
    if (factor > 0 && natural * factor > KERNEL_MAX_PX) { factor = Math.max(1, Math.floor(KERNEL_MAX_PX / natural)); }
    state.kernelZoom = factor;
    if (factor > 0) {
      img.style.width = (natural * factor) + "px";
      img.style.height = (img.naturalHeight * factor) + "px";
      frame.classList.add("zoomed");
      $("kernel-zoom-level").textContent = factor + "\u00d7 (each PNG pixel drawn " + factor + "\u00d7" + factor + ")";
    } else {
      img.style.width = "";
      img.style.height = "";
      frame.classList.remove("zoomed");
      $("kernel-zoom-level").textContent = "fitted to the page; click the picture to enlarge";
    }
    img.style.cursor = factor > 0 && !canDouble(natural, factor) ? "zoom-out" : "zoom-in";
    $("kernel-zoom-out").disabled = factor === 0;
    $("kernel-zoom-fit").disabled = factor === 0;
    $("kernel-zoom-in").disabled = natural > 0 && factor > 0 && !canDouble(natural, factor);
  }
  function zoomKernels(step) {
    var img = $("kernel-img");
    var natural = img.naturalWidth || 0;
    if (!natural) { return; }
    var factor = state.kernelZoom || 0;
    if (step > 0) {
      if (factor === 0) {  // from the fitted size: the first power of two at least twice as large as shown
        factor = 1;
        while (natural * factor < 2 * Math.max(img.clientWidth, 1) && canDouble(natural, factor)) { factor *= 2; }
      } else if (canDouble(natural, factor)) {
        factor *= 2;
      } else {
        factor = 0;  // at the largest size a click goes back to the fitted view
      }
    } else {
      factor = factor > 1 ? factor / 2 : 0;
    }
    setKernelZoom(factor);
  }

  function loadKernels() {
    var layer = currentLayer();
    var section = $("kernels");
    if (!layer || !layer.has_kernels) { section.hidden = true; return; }
    var img = $("kernel-img");
    setKernelZoom(0);
    img.src = "/api/layers/" + enc(layer.id) + "/kernels.png";
    img.alt = "Kernel grid of layer " + layer.name + ": rows are filters, columns input channels";
    section.hidden = false;
    api("/api/layers/" + enc(layer.id) + "/weights").then(function (w) {
      if (state.layerId !== layer.id) { return; }
      setStats($("weight-health"), [
        ["Shape", w.shape.join("×") + (w.groups > 1 ? ", " + w.groups + " groups" : "")],
        ["Mean / std", fmt(w.mean) + " / " + fmt(w.std)],
        ["Dead filters", w.dead_count + " of " + w.shape[0], w.dead_count > 0]
      ]);
    }).catch(function (err) { showError(err.message); });
  }

  // -- U-Net -------------------------------------------------------------------------------------
  function loadUNet() {
    var section = $("unet");
    if (!state.imageId || (state.model && state.model.unet === false)) { section.hidden = true; return Promise.resolve(); }
    if (state.unetFor === state.imageId) { return Promise.resolve(); }
    var imageId = state.imageId;
    return api("/api/images/" + enc(imageId) + "/unet").then(function (view) {
      if (state.imageId !== imageId) { return; }
      state.unetFor = imageId;
      renderUNet(view);
    }).catch(function (err) {
      if (err.code === "not_a_unet" || err.code === "unet_unavailable") {
        if (state.model && err.code === "not_a_unet") { state.model.unet = false; }
        section.hidden = true;
        return;
      }
      showError(err.message);
    });
  }

  // hover regions over a figure: the full text of each shortened name or skip label (title attribute)
  function addHovers(parent, hovers) {
    (hovers || []).forEach(function (hover) {
      var span = document.createElement("span");
      span.className = "unet-hover";
      span.title = hover.title;
      span.style.left = (hover.box[0] * 100) + "%";
      span.style.top = (hover.box[1] * 100) + "%";
      span.style.width = ((hover.box[2] - hover.box[0]) * 100) + "%";
      span.style.height = ((hover.box[3] - hover.box[1]) * 100) + "%";
      parent.appendChild(span);
    });
  }

  function renderUNet(view) {
    var section = $("unet");
    var img = $("unet-img");
    var blocks = $("unet-blocks");
    clear(blocks);
    if (view.figure) {
      img.src = view.figure.url;
      img.width = view.figure.width;
      img.height = view.figure.height;
      img.alt = "U-Net flow: encoder, bottleneck and decoder blocks with skip connections";
      view.blocks.forEach(function (block) {
        var button = document.createElement("button");
        button.type = "button";
        button.className = "unet-block";
        var layer = state.layers.filter(function (l) { return l.id === block.layer_id; })[0];
        button.setAttribute("aria-label", "Block " + block.title + (layer ? ": open layer " + layer.name : ""));
        button.title = block.title;
        button.style.left = (block.box[0] * 100) + "%";
        button.style.top = (block.box[1] * 100) + "%";
        button.style.width = ((block.box[2] - block.box[0]) * 100) + "%";
        button.style.height = ((block.box[3] - block.box[1]) * 100) + "%";
        if (!layer) { button.disabled = true; }
        button.addEventListener("click", function () {
          if (layer) {
            state.filter = "";
            $("layer-filter").value = "";
            fillLayers();
            selectLayer(layer.id).then(function () { $("layer-view").focus(); $("layer-view").scrollIntoView({ block: "start" }); });
          }
        });
        blocks.appendChild(button);
      });
      addHovers(blocks, view.hovers);
    }
    var panels = $("unet-panels");
    clear(panels);
    view.panels.forEach(function (panel) {
      var figure = document.createElement("figure");
      var pimg = document.createElement("img");
      pimg.src = panel.url;
      pimg.width = panel.width;
      pimg.height = panel.height;
      pimg.loading = "lazy";
      pimg.alt = "U-Net " + panel.caption;
      var caption = document.createElement("figcaption");
      caption.textContent = panel.caption;
      var wrap = document.createElement("div");
      wrap.className = "unet-figure";
      wrap.appendChild(pimg);
      addHovers(wrap, panel.hovers);
      pimg = wrap;
      figure.appendChild(pimg);
      figure.appendChild(caption);
      panels.appendChild(figure);
    });
    section.hidden = !view.figure && !view.panels.length;
  }

  // -- events ------------------------------------------------------------------------------------
  function bind() {
    bindCam();
    bindVolume();
    $("image-select").addEventListener("change", function () { selectImage(this.value); });
    $("upload-form").addEventListener("submit", upload);
    $("layer-select").addEventListener("change", function () { selectLayer(this.value); });
    $("layer-filter").addEventListener("input", function () {
      state.filter = this.value.trim();
      fillLayers();
      var ids = visibleLayerIds();
      if (ids.length && ids.indexOf(state.layerId) === -1) { selectLayer(ids[0]); }
    });
    $("page-prev").addEventListener("click", function () { state.page -= 1; renderGrid(); });
    $("page-next").addEventListener("click", function () { state.page += 1; renderGrid(); });
    var sliceTimer = null;
    $("slice-slider").addEventListener("input", function () {
      state.slice = Number(this.value);
      $("slice-value").textContent = sliceText(state.summary, state.slice);
      clearTimeout(sliceTimer);
      sliceTimer = setTimeout(function () {
        renderGrid();
        if (state.channel !== null) { openDetail(state.channel); }
      }, 120);
    });
    var grid = $("channel-grid");
    grid.addEventListener("click", function (event) {
      var button = event.target.closest("button.channel");
      if (button) { openDetail(Number(button.getAttribute("data-channel"))); }
    });
    grid.addEventListener("mouseover", function (event) {
      var button = event.target.closest("button.channel");
      if (button) { showTooltip(button); }
    });
    grid.addEventListener("mouseout", function (event) {
      var button = event.target.closest("button.channel");
      if (button && !button.contains(event.relatedTarget)) { hideTooltip(button); }
    });
    grid.addEventListener("focusin", function (event) {
      var button = event.target.closest("button.channel");
      if (button) { showTooltip(button); }
    });
    grid.addEventListener("focusout", function (event) {
      var button = event.target.closest("button.channel");
      if (button) { hideTooltip(button); }
    });
    $("detail-close").addEventListener("click", closeDetail);
    $("kernel-img").addEventListener("click", function (event) { zoomKernels(event.shiftKey ? -1 : 1); });
    $("kernel-img").addEventListener("load", function () { setKernelZoom(state.kernelZoom || 0); });
    $("kernel-zoom-in").addEventListener("click", function () { zoomKernels(1); });
    $("kernel-zoom-out").addEventListener("click", function () { zoomKernels(-1); });
    $("kernel-zoom-fit").addEventListener("click", function () { setKernelZoom(0); });
    document.addEventListener("keydown", function (event) {
      if (event.altKey || event.ctrlKey || event.metaKey) { return; }
      if (event.key === "Escape") { hideTooltip(null); closeDetail(); return; }
      var tag = event.target && event.target.tagName;
      if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") { return; }
      if (event.key === "ArrowRight") { event.preventDefault(); stepLayer(1); }
      else if (event.key === "ArrowLeft") { event.preventDefault(); stepLayer(-1); }
    });
  }

  function start() {
    if (window.location.search.indexOf("token=") !== -1 && window.history.replaceState) {
      // the server has set its cookie; keep the secret out of the address bar and history
      window.history.replaceState(null, "", window.location.pathname);
    }
    bind();
    api("/api/model").then(function (model) {
      state.model = model;
      state.layers = model.layers;
      $("model-name").textContent = model.name + " (" + model.framework + ")";
      document.title = "convscope viewer: " + model.name;
      fillLayers();
      if (state.layers.length) {
        state.layerId = state.layers[0].id;
        $("layer-select").value = state.layerId;
        loadKernels();
      }
      return loadImages();
    }).then(function () {
      if (state.images.length) { return selectImage(state.images[0].id); }
      return loadLayer();
    }).then(function () {
      document.body.setAttribute("data-ready", "true");
    }).catch(function (err) { showError(err.message); });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
