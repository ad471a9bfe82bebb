// One series: select episodes (or all missing) and queue them; states and progress live.

const SAFE_KEY = /^[A-Za-z0-9._~-]+$/;

export function init(panel) {
  const { api, t, toast, errorToast, announce, live } = panel;
  const key = document.body.dataset.seriesKey;
  const provider = document.body.dataset.provider;
  const hideTimers = new Map();

  const form = () => document.getElementById("episodes-form");
  const rowOf = (season, episode) => document.querySelector(`tr[data-episode="${season}-${episode}"]`);

  function updateSelection() {
    const count = form().querySelectorAll("input[name=episode]:checked:not(:disabled)").length;
    document.getElementById("selected-count").textContent = String(count);
    for (const box of form().querySelectorAll("[data-select-season]")) {
      const season = box.dataset.selectSeason;
      const boxes = [...form().querySelectorAll(`[data-season="${season}"] input[name=episode]:not(:disabled)`)];
      const checked = boxes.filter((b) => b.checked).length;
      box.disabled = boxes.length === 0;
      box.checked = boxes.length > 0 && checked === boxes.length;
      box.indeterminate = checked > 0 && checked < boxes.length;
    }
  }

  // The counts on the page (the badges at the top, each season's header) from the rows, as
  // the server counts them: local, or missing whatever else it is (queued, downloading,
  // failed). Counted anew after every change: deltas left one of them stale after a refresh.
  function recount() {
    let local = 0;
    let missing = 0;
    for (const section of form().querySelectorAll("section[data-season]")) {
      const rows = [...section.querySelectorAll("tr[data-state]")];
      const here = rows.filter((row) => row.dataset.state === "local").length;
      const label = section.querySelector("[data-season-counts]");
      if (label) label.textContent = `${t("series.local", { count: here })} · ${t("series.missing", { count: rows.length - here })}`;
      local += here;
      missing += rows.length - here;
    }
    const localBadge = document.getElementById("series-local");
    const missingBadge = document.getElementById("series-missing");
    localBadge.dataset.local = String(local);
    missingBadge.dataset.missing = String(missing);
    localBadge.textContent = t("series.local", { count: local });
    missingBadge.textContent = t("series.missing", { count: missing });
    const all = document.querySelector("[data-action=queue-missing]");
    if (all) all.disabled = missing === 0;
  }

  function setProgress(row, percent) {
    const box = row.querySelector(".episode-progress");
    const bar = box.querySelector(".progress");
    const value = Math.max(0, Math.min(100, Math.round(percent * 10) / 10));
    box.classList.remove("d-none");
    bar.setAttribute("aria-valuenow", String(value));
    const inner = bar.querySelector(".progress-bar");
    inner.style.width = `${value}%`;
    inner.textContent = `${value} %`;
    inner.classList.toggle("progress-bar-animated", value < 100);
    inner.classList.toggle("bg-success", value >= 100);
  }

  function setState(row, state) {
    if (!row) return;
    const before = row.dataset.state;
    row.dataset.state = state;
    const badge = row.querySelector("[data-state-badge]");
    badge.className = `badge state-badge state-${state}`;
    badge.textContent = t(`state.${state}`);
    const box = row.querySelector("input[name=episode]");
    box.disabled = state !== "missing";
    if (box.disabled) box.checked = false;
    if (state !== "downloading" && state !== "local") row.querySelector(".episode-progress").classList.add("d-none");
    if ((before === "local") !== (state === "local")) recount();
  }

  async function queue(episodes, all) {
    const priority = document.getElementById("priority").value;
    let result;
    if (all && SAFE_KEY.test(key)) {
      result = await api("POST", `api/anime/${encodeURIComponent(key)}/download`, { missing: true, priority, provider });
    } else {
      result = await api("POST", "api/queue/add", { series_key: key, provider, episodes, priority });
    }
    for (const { season, episode } of episodes) {
      const row = rowOf(season, episode);
      if (row && row.dataset.state === "missing") setState(row, "queued");
    }
    updateSelection();
    const count = result.item_ids.length;
    toast(t("series.queued_n", { count }), "success");
    announce(t("series.queued_n", { count }));
  }

  document.addEventListener("change", (event) => {
    const seasonBox = event.target.closest("[data-select-season]");
    if (seasonBox) {
      const season = seasonBox.dataset.selectSeason;
      for (const box of form().querySelectorAll(`[data-season="${season}"] input[name=episode]:not(:disabled)`)) {
        box.checked = seasonBox.checked;
      }
    }
    if (event.target.closest("#episodes-form")) updateSelection();
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-action=queue-selected], [data-action=queue-missing]");
    if (!button) return;
    const all = button.dataset.action === "queue-missing";
    const selector = all ? "tr[data-state=missing]" : "tr[data-state=missing] input[name=episode]:checked";
    const episodes = [...form().querySelectorAll(selector)].map((element) => {
      const [season, episode] = element.closest("tr").dataset.episode.split("-").map(Number);
      return { season, episode };
    });
    if (!episodes.length) {
      toast(t("series.nothing_selected"), "warning");
      return;
    }
    button.disabled = true;
    try {
      await queue(episodes, all);
    } catch (err) {
      errorToast(err);
    } finally {
      button.disabled = all && document.querySelectorAll("tr[data-state=missing]").length === 0;
    }
  });

  // Language profile
  const languagesForm = document.getElementById("languages-form");
  const list = languagesForm.querySelector("[data-language-list]");
  const globalSwitch = document.getElementById("languages-global");
  panel.initLanguageList(list);
  globalSwitch.addEventListener("change", () => {
    document.getElementById("languages-own").disabled = globalSwitch.checked;
  });
  languagesForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const languages = globalSwitch.checked ? null : panel.languageOrder(list);
    try {
      await api("PUT", `api/anime/${encodeURIComponent(key)}/languages`, { languages, provider: provider || null });
      toast(t("series.languages_saved"), "success");
    } catch (err) {
      errorToast(err);
    }
  });

  updateSelection();
  if (!live) return;

  const mine = (data) => data.series_key === key && (!data.provider || data.provider === provider);
  live.on("download_started", (data) => {
    if (!mine(data)) return;
    const row = rowOf(data.season, data.episode);
    setState(row, "downloading");
    if (row) setProgress(row, 0);
    announce(t("js.started", { name: panel.episodeCode(data.season, data.episode) }));
  });
  live.on("download_progress", (data) => {
    if (!mine(data)) return;
    const row = rowOf(data.season, data.episode);
    if (!row || row.dataset.state === "local") return;
    if (row.dataset.state !== "downloading") setState(row, "downloading");
    setProgress(row, (data.progress && data.progress.percent) || 0);
  });
  live.on("download_complete", (data) => {
    if (!mine(data)) return;
    const row = rowOf(data.season, data.episode);
    if (!row) return;
    setProgress(row, 100);
    setState(row, "local");
    const box = row.querySelector(".episode-progress");
    clearTimeout(hideTimers.get(row));
    hideTimers.set(row, setTimeout(() => box.classList.add("d-none"), 4000));
    updateSelection();
  });
  // Episodes whose download failed for good while this page was open: the page the server
  // renders has no "failed" state (the row says "missing"), so a refresh puts it back.
  const failedHere = new Set();
  live.on("download_failed", (data) => {
    if (!mine(data)) return;
    const key = `${data.season}-${data.episode}`;
    if (data.will_retry) failedHere.delete(key);
    else failedHere.add(key);
    setState(rowOf(data.season, data.episode), data.will_retry ? "queued" : "failed");
  });
  let timer = null;
  const refresh = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const checked = [...form().querySelectorAll("input[name=episode]:checked")].map((b) => b.value);
      await panel.refreshFragment("#episodes-form", location.pathname + location.search, "#episodes-form");
      for (const value of checked) {
        const box = form().querySelector(`input[name=episode][value="${value}"]:not(:disabled)`);
        if (box) box.checked = true;
      }
      for (const key of failedHere) {
        const [season, episode] = key.split("-").map(Number);
        const row = rowOf(season, episode);
        if (!row || row.dataset.state !== "missing") failedHere.delete(key);  // queued again, or here
        else setState(row, "failed");
      }
      recount();
      updateSelection();
    }, 400);
  };
  live.on("queue_status", (data) => {
    // "added": queued from another tab, MQTT, a script or auto-download; rows said "Missing".
    if (["added", "removed", "cleared_completed", "cleared_failed", "retry"].includes(data.action)) refresh();
  });
  live.on("scan_complete", refresh);
  // Stop puts running downloads back in the queue without an event per item: their rows
  // said "Downloading" at the last percent for good.
  live.on("queue_stopped", refresh);
  live.on("reconnected", refresh);
}
