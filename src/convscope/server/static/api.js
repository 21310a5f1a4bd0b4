// Renders /api/openapi.json as a readable list (textContent only; no external viewer, no CDN).
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = text; }
    if (cls) { node.className = cls; }
    return node;
  }
  function schemaName(schema) {
    if (!schema) { return ""; }
    if (schema.$ref) { return schema.$ref.split("/").pop(); }
    if (schema.type === "array" && schema.items) { return "array of " + schemaName(schema.items); }
    if (schema.anyOf) { return schema.anyOf.map(schemaName).join(" | "); }
    return schema.type || "";
  }
  fetch("/api/openapi.json", { credentials: "same-origin" }).then(function (r) {
    if (!r.ok) { throw new Error("HTTP " + r.status); }
    return r.json();
  }).then(function (spec) {
    $("api-intro").textContent = spec.info.title + " " + spec.info.version + ". " + (spec.info.description || "");
    var routes = $("api-routes");
    Object.keys(spec.paths).forEach(function (path) {
      var ops = spec.paths[path];
      Object.keys(ops).forEach(function (method) {
        var op = ops[method];
        var section = el("section", null, "panel");
        var h = el("h2");
        h.appendChild(el("span", method.toUpperCase() + " ", "method"));
        h.appendChild(el("code", path));
        section.appendChild(h);
        if (op.summary) { section.appendChild(el("p", op.summary)); }
        var params = op.parameters || [];
        if (params.length) {
          var dl = el("dl", null, "stats");
          params.forEach(function (p) {
            dl.appendChild(el("dt", p.name + " (" + p.in + (p.required ? ", required" : "") + ")"));
            dl.appendChild(el("dd", schemaName(p.schema) + (p.description ? ": " + p.description : "")));
          });
          section.appendChild(dl);
        }
        if (op.requestBody) {
          section.appendChild(el("p", "Body: " + Object.keys(op.requestBody.content || {}).join(", "), "meta"));
        }
        var codes = Object.keys(op.responses || {});
        section.appendChild(el("p", "Responses: " + codes.join(", "), "meta"));
        routes.appendChild(section);
      });
    });
  }).catch(function (err) {
    $("api-intro").textContent = "Cannot load the API description: " + err.message;
  });
})();
