// convscope layer filter: the same choices as --layer / --kind (convscope.core.layers.select_layers),
// shared by the HTML report and the live viewer (one file, served by both).
//   "enc*.conv", "dec?.up", "enc[12].*"  glob patterns on the full name (case-sensitive, like fnmatch)
//   "conv", "activation", "norm", ...    a layer kind ("conv" includes transposed convolutions; "all")
//   "kind:pool"                          a kind, explicitly
//   anything else                        a part of the name (case-insensitive), as you type
// Several terms separated by spaces or commas: a layer matches if any term does.
(function () {
  "use strict";

  function globToRegExp(glob) {
    var out = "", i = 0;
    while (i < glob.length) {
      var c = glob.charAt(i);
      if (c === "*") { out += ".*"; }
      else if (c === "?") { out += "."; }
      else if (c === "[") {
        var close = glob.indexOf("]", i + 1);
        if (close === -1) { out += "\\["; }
        else {
          var body = glob.slice(i + 1, close);
          if (body.charAt(0) === "!") { body = "^" + body.slice(1); }
          out += "[" + body.replace(/\\/g, "\\\\") + "]";
          i = close;
        }
      } else { out += c.replace(/[.+^${}()|\\\/]/g, "\\$&"); }
      i += 1;
    }
    return new RegExp("^" + out + "$");
  }

  function kindMatches(wanted, kind) {
    if (wanted === "all") { return true; }
    if (wanted === "conv") { return kind === "conv" || kind === "conv_transpose"; }
    return kind === wanted;
  }

  function termMatcher(term, kinds) {
    if (term.indexOf("kind:") === 0) {
      var k = term.slice(5).toLowerCase();
      return function (name, kind) { return kindMatches(k, kind); };
    }
    if (/[*?[]/.test(term)) {
      var re = globToRegExp(term);
      return function (name) { return name === term || re.test(name); };
    }
    if (term.toLowerCase() === "all" || term.toLowerCase() === "conv" || kinds.indexOf(term.toLowerCase()) !== -1) {
      var wanted = term.toLowerCase();
      var low = wanted;
      return function (name, kind) { return kindMatches(wanted, kind) || name.toLowerCase().indexOf(low) !== -1; };
    }
    var part = term.toLowerCase();
    return function (name) { return name.toLowerCase().indexOf(part) !== -1; };
  }

  // convscopeLayerMatcher("enc*.conv relu", kindsPresent) -> function (name, kind) -> true | false
  // (kindsPresent: the layer kinds of the model, so a word is read as a kind only when it is one)
  window.convscopeLayerMatcher = function (text, kinds) {
    var terms = String(text || "").split(/[\s,]+/).filter(function (t) { return t.length > 0; });
    if (!terms.length) { return function () { return true; }; }
    var known = (kinds || []).map(function (k) { return String(k).toLowerCase(); });
    var matchers = terms.map(function (t) { return termMatcher(t, known); });
    return function (name, kind) {
      for (var i = 0; i < matchers.length; i++) { if (matchers[i](name, kind || "")) { return true; } }
      return false;
    };
  };
})();
