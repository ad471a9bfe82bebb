// Applies the theme before the first paint: "auto" follows the system, and keeps following it.
(function () {
  var root = document.documentElement;
  var query = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  function apply() {
    // Pages rendered without the panel's context (early error pages) read the cookie here.
    var match = document.cookie.match(/(?:^|;\s*)aniworld_theme=(auto|light|dark)/);
    var pref = root.getAttribute("data-theme-pref") || (match ? match[1] : "auto");
    var dark = pref === "dark" || (pref === "auto" && query && query.matches);
    root.setAttribute("data-bs-theme", dark ? "dark" : "light");
  }
  apply();
  if (query && query.addEventListener) query.addEventListener("change", apply);
  window.awApplyTheme = apply;
})();
