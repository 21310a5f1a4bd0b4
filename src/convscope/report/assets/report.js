// convscope report: linked orthogonal planes of 3D scan inputs (sliders, shared crosshair,
// click in one plane moves the others, maximum-projection toggle). Data comes from a
// <script type="application/json" class="planes-data"> block; a slice PNG is requested only when shown.
(function () {
  "use strict";
  // per plane: [slice axis, row axis, column axis] of the RAS+ voxel grid; rows and columns are
  // both reversed (radiological: rows A->P or S->I, columns R->L or A->P)
  var AXES = { axial: [2, 1, 0], coronal: [1, 2, 0], sagittal: [0, 2, 1] };

  function nearest(indices, value) {
    var best = 0;
    for (var i = 1; i < indices.length; i++) {
      if (Math.abs(indices[i] - value) < Math.abs(indices[best] - value)) { best = i; }
    }
    return best;
  }

  function setup(section) {
    var holder = section.querySelector("script.planes-data");
    if (!holder) { return; }
    var data;
    try { data = JSON.parse(holder.textContent); } catch (e) { return; }
    var point = data.point.slice();
    var mipBox = section.querySelector(".planes-mip");
    var figures = Array.prototype.slice.call(section.querySelectorAll("figure.plane"));

    function render() {
      var mip = mipBox && mipBox.checked;
      figures.forEach(function (fig) {
        var name = fig.getAttribute("data-plane");
        var plane = data.planes[name];
        var axes = AXES[name];
        var slider = fig.querySelector(".plane-slider");
        var pos = nearest(plane.indices, point[axes[0]]);
        slider.value = String(pos);
        var src = mip ? plane.mip : plane.files[pos];
        var img = fig.querySelector(".plane-img");
        if (img.getAttribute("src") !== src) { img.setAttribute("src", src); }
        fig.setAttribute("data-index", String(plane.indices[pos]));
        fig.querySelector(".plane-index").textContent = mip ? "MIP" : String(plane.indices[pos]);
        var nr = data.shape[axes[1]], nc = data.shape[axes[2]];
        var h = fig.querySelector(".cross-h"), v = fig.querySelector(".cross-v");
        h.style.top = ((nr - 1 - point[axes[1]] + 0.5) / nr * 100) + "%";
        v.style.left = ((nc - 1 - point[axes[2]] + 0.5) / nc * 100) + "%";
      });
    }

    figures.forEach(function (fig) {
      var name = fig.getAttribute("data-plane");
      var plane = data.planes[name];
      var axes = AXES[name];
      fig.querySelector(".plane-slider").addEventListener("input", function () {
        point[axes[0]] = plane.indices[Number(this.value)];
        if (mipBox) { mipBox.checked = false; }
        render();
      });
      fig.querySelector(".plane-box").addEventListener("click", function (event) {
        var rect = this.getBoundingClientRect();
        if (!rect.width || !rect.height) { return; }
        var fr = Math.min(Math.max((event.clientY - rect.top) / rect.height, 0), 0.999999);
        var fc = Math.min(Math.max((event.clientX - rect.left) / rect.width, 0), 0.999999);
        var nr = data.shape[axes[1]], nc = data.shape[axes[2]];
        point[axes[1]] = nr - 1 - Math.floor(fr * nr);
        point[axes[2]] = nc - 1 - Math.floor(fc * nc);
        render();
      });
    });
    if (mipBox) { mipBox.addEventListener("change", render); }
    render();
  }

  Array.prototype.slice.call(document.querySelectorAll("section.linked-planes")).forEach(setup);
})();

// convscope report: layer filter, keyboard navigation, current-layer highlight.
// Plain JavaScript, no dependencies; only textContent/attributes are written (never HTML).
(function () {
  "use strict";

  var filter = document.getElementById("layer-filter");
  var status = document.getElementById("filter-status");
  var noMatch = document.getElementById("no-match");
  var items = Array.prototype.slice.call(document.querySelectorAll("#layer-links li"));
  var sections = Array.prototype.slice.call(document.querySelectorAll("section.layer"));
  var linkFor = {};
  items.forEach(function (li) {
    var a = li.querySelector("a");
    linkFor[a.getAttribute("data-target")] = a;
  });
  var current = null;

  function visibleSections() {
    return sections.filter(function (s) { return !s.hidden; });
  }

  function setCurrent(id) {
    if (current === id) { return; }
    if (current && linkFor[current]) { linkFor[current].removeAttribute("aria-current"); }
    current = id;
    if (id && linkFor[id]) {
      linkFor[id].setAttribute("aria-current", "true");
      var nav = document.getElementById("layer-nav");
      var link = linkFor[id];
      var top = link.offsetTop, bottom = top + link.offsetHeight;
      if (top < nav.scrollTop || bottom > nav.scrollTop + nav.clientHeight) {
        nav.scrollTop = Math.max(0, top - nav.clientHeight / 2);
      }
    }
  }

  function goTo(section) {
    if (!section) { return; }
    setCurrent(section.id);
    section.scrollIntoView({ block: "start" });
    var heading = section.querySelector("h2");
    if (heading) { heading.focus({ preventScroll: true }); }
    if (window.history && window.history.replaceState) {
      window.history.replaceState(null, "", "#" + section.id);
    }
  }

  var kindsPresent = items.map(function (li) { return li.getAttribute("data-kind") || ""; });

  function applyFilter() {
    var text = (filter.value || "").trim();
    var matches = window.convscopeLayerMatcher(text, kindsPresent);  // layer-filter.js: globs and kinds
    var shown = 0;
    items.forEach(function (li, i) {
      var match = matches(li.getAttribute("data-name") || "", li.getAttribute("data-kind") || "");
      li.hidden = !match;
      if (sections[i]) { sections[i].hidden = !match; }
      if (match) { shown += 1; }
    });
    var total = sections.length;
    status.textContent = text === "" ? total + (total === 1 ? " layer" : " layers")
      : shown + " of " + total + (total === 1 ? " layer matches" : " layers match");
    noMatch.hidden = shown !== 0;
  }

  function step(delta) {
    var visible = visibleSections();
    if (!visible.length) { return; }
    var index = visible.findIndex(function (s) { return s.id === current; });
    if (index === -1) {
      // start from the first section at or below the top of the viewport
      index = visible.findIndex(function (s) { return s.getBoundingClientRect().bottom > 1; });
      if (index === -1) { index = visible.length - 1; }
      if (delta > 0 && visible[index].getBoundingClientRect().top > 1) { delta = 0; }
      else if (delta < 0 && visible[index].getBoundingClientRect().top < -1) { delta = 0; }
    }
    var next = Math.min(visible.length - 1, Math.max(0, index + delta));
    goTo(visible[next]);
  }

  function isTyping(target) {
    if (!target) { return false; }
    var tag = target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) { return; }
    if (event.key === "/" && !isTyping(event.target)) {
      event.preventDefault();
      filter.focus();
      filter.select();
      return;
    }
    if (event.key === "Escape" && event.target === filter) {
      filter.value = "";
      applyFilter();
      return;
    }
    if (isTyping(event.target)) {
      if (event.target === filter && event.key === "Enter") {
        var first = visibleSections()[0];
        if (first) { event.preventDefault(); goTo(first); }
      }
      return;
    }
    if (event.key === "ArrowRight") { event.preventDefault(); step(1); }
    else if (event.key === "ArrowLeft") { event.preventDefault(); step(-1); }
  });

  items.forEach(function (li) {
    li.querySelector("a").addEventListener("click", function (event) {
      var section = document.getElementById(this.getAttribute("data-target"));
      if (section) { event.preventDefault(); goTo(section); }
    });
  });

  filter.addEventListener("input", applyFilter);

  if ("IntersectionObserver" in window) {
    var observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.isIntersecting && entry.boundingClientRect.top < window.innerHeight / 3) {
          setCurrent(entry.target.id);
        }
      });
    }, { rootMargin: "0px 0px -66% 0px" });
    sections.forEach(function (s) { observer.observe(s); });
  }

  // U-Net flow figure: place the block links over the picture (boxes are fractions of it)
  // (and the hover regions of shortened names and skip labels: their title is the full text)
  Array.prototype.forEach.call(document.querySelectorAll(".flow-block, .flow-note"), function (link) {
    var box = (link.getAttribute("data-box") || "").split(",").map(Number);
    if (box.length !== 4 || box.some(isNaN)) { return; }
    link.style.left = (box[0] * 100) + "%";
    link.style.top = (box[1] * 100) + "%";
    link.style.width = ((box[2] - box[0]) * 100) + "%";
    link.style.height = ((box[3] - box[1]) * 100) + "%";
    link.classList.add("placed");
    if (!link.hasAttribute("href")) { return; }
    link.addEventListener("click", function (event) {
      var section = document.getElementById(this.getAttribute("href").slice(1));
      if (section) {
        event.preventDefault();
        if (section.hidden) { filter.value = ""; applyFilter(); }
        goTo(section);
      }
    });
  });

  if (location.hash) {
    var target = document.getElementById(location.hash.slice(1));
    if (target && target.classList.contains("layer")) { setCurrent(target.id); }
  }
  applyFilter();
})();
