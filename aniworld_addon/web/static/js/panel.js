// The panel's core: API calls with the CSRF header, toasts, dialogs, theme and language,
// keyboard shortcuts, the live connection and the page's own module.

const config = JSON.parse(document.getElementById("panel-config").textContent);
const base = config.base;
const strings = config.strings || {};

export function t(key, values = {}) {
  let text = strings[key] || key;
  for (const [name, value] of Object.entries(values)) text = text.split(`{${name}}`).join(String(value));
  return text;
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

function setCookie(name, value) {
  document.cookie = `${name}=${encodeURIComponent(value)}; path=/; max-age=31536000; samesite=strict`;
}

export class ApiError extends Error {
  constructor(status, code, message, details, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;  // seconds, from a Retry-After header (429, 503)
  }
}

// Every call goes to base + path (path has no leading slash), so it stays under the ingress prefix.
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const csrf = cookie("aniworld_csrf");
  if (csrf) headers["X-CSRF-Token"] = csrf;
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(base + path, init);
  } catch (err) {
    throw new ApiError(0, "network", t("js.network_error"));
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    if (response.status === 401 && config.authenticated && !config.ingress) {
      toast(t("js.session_expired"), "warning");
      setTimeout(() => location.assign(base + "login"), 1200);
    }
    const retryAfter = Number.parseFloat(response.headers.get("Retry-After"));
    throw new ApiError(response.status, error.code || "http_" + response.status, error.message || response.statusText, error.details, Number.isFinite(retryAfter) ? retryAfter : null);
  }
  return data;
}

// Runs fn once at a time per control: a second click while the first request runs is ignored
// (a double click made two API tokens, one never shown, and two backups pushing a real one out).
export async function busyWhile(control, fn) {
  if (!control || control.dataset.busy) return undefined;
  control.dataset.busy = "1";
  control.setAttribute("aria-busy", "true");
  const wasDisabled = control.disabled;
  if ("disabled" in control) control.disabled = true;
  try {
    return await fn();
  } finally {
    delete control.dataset.busy;
    control.removeAttribute("aria-busy");
    if ("disabled" in control) control.disabled = wasDisabled;
  }
}

export function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  // A fresh text node after a tick makes screen readers announce repeated messages too.
  setTimeout(() => { region.textContent = text; }, 50);
}

const TOAST_CLASSES = { success: "text-bg-success", danger: "text-bg-danger", warning: "text-bg-warning", info: "text-bg-primary" };

export function toast(message, kind = "info") {
  const container = document.getElementById("toasts");
  if (!container || !window.bootstrap) return;
  const element = document.createElement("div");
  element.className = `toast align-items-center border-0 ${TOAST_CLASSES[kind] || TOAST_CLASSES.info}`;
  element.setAttribute("role", kind === "danger" ? "alert" : "status");
  element.setAttribute("aria-atomic", "true");
  element.dataset.kind = kind;
  const row = document.createElement("div");
  row.className = "d-flex";
  const body = document.createElement("div");
  body.className = "toast-body";
  body.textContent = message;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "btn-close me-2 m-auto" + (kind === "warning" ? "" : " btn-close-white");
  close.setAttribute("data-bs-dismiss", "toast");
  close.setAttribute("aria-label", t("common.close"));
  row.append(body, close);
  element.append(row);
  container.append(element);
  element.addEventListener("hidden.bs.toast", () => element.remove());
  new window.bootstrap.Toast(element, { delay: kind === "danger" ? 10000 : 5000 }).show();
}

export function errorToast(err) {
  toast(t("js.request_failed", { message: err && err.message ? err.message : String(err) }), "danger");
}

export function confirmDialog(text, { ok = t("common.confirm"), danger = true } = {}) {
  const element = document.getElementById("confirm-dialog");
  if (!element || !window.bootstrap) return Promise.resolve(window.confirm(text));
  document.getElementById("confirm-text").textContent = text;
  const button = document.getElementById("confirm-ok");
  button.textContent = ok;
  button.className = "btn " + (danger ? "btn-danger" : "btn-primary");
  const modal = window.bootstrap.Modal.getOrCreateInstance(element);
  return new Promise((resolve) => {
    let answer = false;
    const onOk = () => { answer = true; modal.hide(); };
    button.addEventListener("click", onOk, { once: true });
    element.addEventListener("hidden.bs.modal", () => {
      button.removeEventListener("click", onOk);
      resolve(answer);
    }, { once: true });
    modal.show();
  });
}

export function localizeTimes(root = document) {
  const locale = config.lang === "de" ? "de-DE" : "en-GB";
  for (const element of root.querySelectorAll("time[data-local-time]")) {
    const value = new Date(element.getAttribute("datetime"));
    if (!Number.isNaN(value.getTime())) {
      element.textContent = value.toLocaleString(locale, { dateStyle: "medium", timeStyle: "short" });
      element.title = value.toISOString();
    }
  }
}

export function formatTime(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const locale = config.lang === "de" ? "de-DE" : "en-GB";
  return new Date(seconds * 1000).toLocaleString(locale, { dateStyle: "medium", timeStyle: "short" });
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return "";
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mm = String(m).padStart(h ? 2 : 1, "0");
  return (h ? `${h}:` : "") + `${mm}:${String(s).padStart(2, "0")}`;
}

export function episodeCode(season, episode) {
  return season === 0 ? `F${episode}` : `S${String(season).padStart(2, "0")}E${String(episode).padStart(2, "0")}`;
}

// ---- forms shared by settings and scheduler: typed fields, inline errors ------------------

function setPath(target, path, value) {
  const parts = path.split(".");
  let node = target;
  for (const part of parts.slice(0, -1)) node = node[part] = node[part] || {};
  node[parts[parts.length - 1]] = value;
}

// Reads every [name][data-type] field into a nested object; returns {values, errors}.
export function collectForm(form) {
  const values = {};
  const errors = [];
  for (const field of form.querySelectorAll("[name][data-type]")) {
    const path = field.name;
    const raw = field.value.trim();
    switch (field.dataset.type) {
      case "bool":
        setPath(values, path, field.checked);
        break;
      case "int":
        if (/^-?\d+$/.test(raw)) setPath(values, path, Number(raw));
        else errors.push({ path, message: t("settings.not_a_number") });
        break;
      case "intlist": {
        const parts = raw.split(/[\s,;]+/).filter(Boolean);
        if (parts.length && parts.every((p) => /^\d+$/.test(p))) setPath(values, path, parts.map(Number));
        else errors.push({ path, message: t("settings.not_a_list") });
        break;
      }
      case "lines":
        setPath(values, path, raw.split(/\n+/).map((l) => l.trim()).filter(Boolean));
        break;
      case "nullstr":
        setPath(values, path, raw === "" ? null : raw);
        break;
      default:
        setPath(values, path, raw);
    }
  }
  for (const list of form.querySelectorAll("[data-language-list][data-field]")) {
    setPath(values, list.dataset.field, languageOrder(list));
  }
  return { values, errors };
}

export function clearErrors(form) {
  for (const element of form.querySelectorAll(".is-invalid")) element.classList.remove("is-invalid");
  for (const element of form.querySelectorAll("[data-error-for]")) {
    element.textContent = "";
    element.classList.remove("d-block");
  }
}

// Shows [{path, message}] next to their fields; returns the errors no field could take.
export function showErrors(form, errors) {
  const unplaced = [];
  let first = null;
  for (const error of errors || []) {
    let path = String(error.path || "");
    let slot = null;
    while (path) {
      slot = form.querySelector(`[data-error-for="${CSS.escape(path)}"]`);
      if (slot) break;
      path = path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : "";
    }
    if (!slot) {
      unplaced.push(error);
      continue;
    }
    slot.textContent = slot.textContent ? `${slot.textContent} ${error.message}` : error.message;
    slot.classList.add("d-block");
    const field = form.querySelector(`[name="${CSS.escape(path)}"]`) || form.querySelector(`[data-field="${CSS.escape(path)}"]`);
    if (field) {
      field.classList.add("is-invalid");
      first = first || field;
    }
  }
  return { unplaced, first };
}

// ---- ordered language lists (settings and a series' profile) --------------------------------

export function languageOrder(list) {
  return [...list.querySelectorAll("[data-language]")]
    .filter((item) => item.querySelector("input[type=checkbox]").checked)
    .map((item) => item.dataset.language);
}

export function initLanguageList(list, onChange = () => {}) {
  list.addEventListener("click", (event) => {
    const button = event.target.closest("[data-move]");
    if (!button) return;
    const item = button.closest("[data-language]");
    if (button.dataset.move === "up" && item.previousElementSibling) {
      item.parentElement.insertBefore(item, item.previousElementSibling);
    } else if (button.dataset.move === "down" && item.nextElementSibling) {
      item.parentElement.insertBefore(item.nextElementSibling, item);
    } else {
      return;
    }
    button.focus();
    const position = [...item.parentElement.children].indexOf(item) + 1;
    announce(`${item.dataset.language}: ${position}`);
    onChange();
  });
  list.addEventListener("change", () => onChange());
}

// Re-fetch a page fragment with HTMX (the page route answers HX-Request with the fragment).
export function refreshFragment(target, url = location.pathname + location.search, select = null) {
  if (!window.htmx || !document.querySelector(target)) return Promise.resolve();
  const options = { target, swap: "outerHTML" };
  if (select) options.select = select;
  return window.htmx.ajax("GET", url, options);
}

// ---- theme and language ----------------------------------------------------------------------

function initPreferences() {
  document.addEventListener("click", (event) => {
    const themeButton = event.target.closest("[data-theme-set]");
    if (themeButton) {
      const value = themeButton.dataset.themeSet;
      setCookie("aniworld_theme", value);
      document.documentElement.setAttribute("data-theme-pref", value);
      if (window.awApplyTheme) window.awApplyTheme();
      for (const b of document.querySelectorAll("[data-theme-set]")) {
        const on = b.dataset.themeSet === value;
        b.classList.toggle("active", on);
        b.setAttribute("aria-pressed", on ? "true" : "false");
      }
      announce(`${t("theme.label")}: ${t("theme." + value)}`);
      return;
    }
    const langButton = event.target.closest("[data-lang-set]");
    if (langButton) {
      setCookie("aniworld_lang", langButton.dataset.langSet);
      location.reload();
      return;
    }
    const action = event.target.closest("[data-action]");
    if (!action) return;
    if (action.dataset.action === "logout") {
      api("POST", "api/auth/logout").catch(() => {}).finally(() => location.assign(base + "login"));
    } else if (action.dataset.action === "shortcuts") {
      showShortcuts();
    }
  });
}

// ---- keyboard shortcuts ----------------------------------------------------------------------

function showShortcuts() {
  const element = document.getElementById("shortcuts-dialog");
  if (element && window.bootstrap) window.bootstrap.Modal.getOrCreateInstance(element).show();
}

const GO = { l: "", a: "add", q: "queue", h: "history", s: "settings", y: "system", c: "scheduler" };

function initShortcuts() {
  let pendingG = 0;
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    const typing = target.closest && target.closest("input, textarea, select, [contenteditable=true]");
    if (typing) {
      if (event.key === "Escape" && target.matches("[data-search-field]")) target.blur();
      return;
    }
    const open = document.querySelector(".modal.show");
    if (open) {
      // Escape closes a dialog even before its focus trap has taken the focus.
      if (event.key === "Escape" && window.bootstrap) window.bootstrap.Modal.getOrCreateInstance(open).hide();
      return;
    }
    if (event.altKey) return;  // Alt+arrows belong to the queue page
    const now = Date.now();
    if (pendingG && now - pendingG < 1500 && GO[event.key] !== undefined) {
      pendingG = 0;
      event.preventDefault();
      location.assign(base + GO[event.key]);
      return;
    }
    pendingG = 0;
    if (event.key === "?") {
      event.preventDefault();
      showShortcuts();
    } else if (event.key === "/") {
      const field = document.querySelector("[data-search-field]");
      event.preventDefault();
      if (field) {
        field.focus();
        field.select();
      } else {
        location.assign(base + "add");
      }
    } else if (event.key === "g") {
      pendingG = now;
    } else {
      document.dispatchEvent(new CustomEvent("panel:shortcut", { detail: { key: event.key, event } }));
    }
  });
}

// ---- live connection and what every page shows from it ---------------------------------------

function setLiveState(state) {
  if (state === "ended") {
    // Logged out in another tab, or the session ran out: say so and go to the login page
    // (the same as an API call answered 401), rather than retry and show "offline" for good.
    if (!config.ingress) {
      toast(t("js.session_expired"), "warning");
      const next = encodeURIComponent(location.pathname.slice(base.length - 1) + location.search);
      setTimeout(() => location.assign(`${base}login?next=${next}`), 1200);
    }
    state = "offline";
  }
  const badge = document.getElementById("live-status");
  if (!badge) return;
  const previous = badge.dataset.state;
  badge.dataset.state = state;
  badge.classList.toggle("text-bg-success", state === "online");
  badge.classList.toggle("text-bg-danger", state === "offline");
  badge.classList.toggle("text-bg-secondary", state === "connecting");
  badge.querySelector(".live-text").textContent = t("live." + state);
  document.body.classList.toggle("is-offline", state === "offline");
  if (state === "offline" && previous === "online") toast(t("js.offline"), "warning");
  if (state === "online" && previous === "offline") toast(t("js.online"), "success");
}

function itemName(data) {
  const row = document.querySelector(`[data-item-id="${data.item_id}"][data-label]`);
  if (row) return row.dataset.label;
  const series = document.body.dataset.seriesKey === data.series_key ? document.querySelector("h1") : null;
  const name = series ? series.childNodes[0].textContent.trim() : data.series_name || data.series_key;
  return `${name} ${episodeCode(data.season, data.episode)}`;
}

function updateQueueCount(data) {
  const badge = document.getElementById("queue-count");
  if (!badge || data.pending === undefined) return;
  const count = (data.pending || 0) + (data.active || 0);
  badge.textContent = String(count);
  badge.classList.toggle("d-none", count === 0);
  badge.setAttribute("aria-label", t("nav.queue_badge", { count }));
}

function initLive() {
  if (!config.authenticated) return null;
  return import(config.modules.live).then(({ LiveClient }) => {
    const url = new URL(base + "ws/connect", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const live = new LiveClient(url.href, ["downloads", "download_progress", "scan_progress", "system"], { onState: setLiveState });
    live.on("queue_status", updateQueueCount);
    // Sent on every connect: what changed while this page had no socket (see live.js).
    live.on("connected", (data) => {
      const state = data.state || {};
      if (state.queue) updateQueueCount(state.queue);
      if (state.scan) scanShow(0, 0);
      else if (banner) banner.classList.add("d-none");
    });
    for (const type of ["queue_started", "queue_stopped", "queue_paused", "queue_resumed"]) live.on(type, updateQueueCount);
    live.on("download_complete", (data) => toast(t("js.download_complete", { name: itemName(data) }), "success"));
    live.on("download_failed", (data) => {
      const reason = (data.error && data.error.message) || "";
      const key = data.will_retry ? "js.download_retry" : "js.download_failed";
      toast(t(key, { name: itemName(data), reason }), data.will_retry ? "warning" : "danger");
    });
    const banner = document.getElementById("scan-banner");
    const scanShow = (done, total) => {
      if (!banner) return;
      banner.classList.remove("d-none");
      const percent = total ? Math.round((100 * done) / total) : 0;
      banner.querySelector(".scan-text").textContent = t("library.scanning", { done, total: total || "…" });
      const bar = banner.querySelector(".progress");
      bar.setAttribute("aria-valuenow", String(percent));
      bar.querySelector(".progress-bar").style.width = `${percent}%`;
    };
    live.on("scan_started", () => scanShow(0, 0));
    live.on("scan_progress", (data) => scanShow(data.done || 0, data.total || 0));
    live.on("scan_complete", (data) => {
      if (banner) banner.classList.add("d-none");
      toast(t("js.scan_complete", { series: data.series ?? "?", missing: data.missing ?? "?" }), "success");
      const unread = data.scan_errors || [];
      if (unread.length) toast(t("js.scan_errors", { count: unread.length, folder: unread[0].folder, message: unread[0].message }), "warning");
    });
    live.on("scan_failed", (data) => {
      if (banner) banner.classList.add("d-none");
      toast(t("js.scan_failed", { message: (data.error && data.error.message) || "" }), "danger");
    });
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) {
        live.closed = false;
        live.connect();
      }
    });
    live.connect();
    return live;
  });
}

// ---- start -----------------------------------------------------------------------------------

const panel = {
  config, base, t, api, ApiError, toast, errorToast, announce, confirmDialog, localizeTimes,
  formatTime, formatDuration, episodeCode, collectForm, clearErrors, showErrors, languageOrder,
  initLanguageList, refreshFragment, busyWhile, live: null,
};
window.awPanel = panel;

initPreferences();
initShortcuts();
localizeTimes();
document.body.addEventListener("htmx:afterSwap", (event) => localizeTimes(event.target));
document.body.addEventListener("htmx:responseError", (event) => {
  const status = event.detail.xhr ? event.detail.xhr.status : 0;
  toast(t("js.request_failed", { message: `HTTP ${status}` }), "danger");
});
document.body.addEventListener("htmx:sendError", () => toast(t("js.network_error"), "danger"));

const livePromise = initLive();
const moduleUrl = document.querySelector("script[data-page-module]")?.dataset.pageModule;
Promise.resolve(livePromise)
  .then((live) => {
    panel.live = live;
    if (!moduleUrl) return null;
    return import(moduleUrl).then((page) => page.init && page.init(panel));
  })
  .catch((err) => console.warn("panel start failed", err))
  .finally(() => document.documentElement.setAttribute("data-panel-ready", "true"));
