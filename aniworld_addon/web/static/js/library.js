// The library list: rescan, live counters, sort links kept in step with the filter form.

export function init(panel) {
  const { api, t, toast, errorToast, live } = panel;
  const form = document.getElementById("library-filter");

  document.addEventListener("click", async (event) => {
    const rescan = event.target.closest("[data-action=rescan]");
    if (rescan) {
      rescan.disabled = true;
      try {
        await api("POST", "api/anime/rescan");
        toast(t("library.rescan_started"), "info");
      } catch (err) {
        errorToast(err);
      } finally {
        rescan.disabled = false;
      }
      return;
    }
    const sortLink = event.target.closest(".sort-link");
    if (sortLink && form) {
      form.querySelector("[name=sort]").value = sortLink.dataset.sort;
      form.querySelector("[name=dir]").value = sortLink.dataset.dir;
    }
  });

  const refresh = () => panel.refreshFragment("#library-list");
  if (!live) return;
  live.on("scan_complete", refresh);
  live.on("reconnected", refresh);
  live.on("download_complete", (data) => {
    for (const row of document.querySelectorAll(`tr[data-series-key="${CSS.escape(data.series_key)}"]`)) {
      const local = row.querySelector("[data-count=local]");
      const missing = row.querySelector("[data-count=missing]");
      const l = Number(local.textContent) + 1;
      const m = Math.max(0, Number(missing.textContent) - 1);
      local.textContent = String(l);
      missing.textContent = String(m);
      missing.classList.toggle("text-bg-warning", m > 0);
      missing.classList.toggle("text-bg-success", m === 0);
      const bar = row.querySelector("[data-completion]");
      if (bar) {
        const pct = l + m ? Math.floor((100 * l) / (l + m)) : 0;
        bar.setAttribute("aria-valuenow", String(pct));
        bar.querySelector(".progress-bar").style.width = `${pct}%`;
      }
    }
  });
}
