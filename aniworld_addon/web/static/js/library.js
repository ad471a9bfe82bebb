// The library list: rescan, live counters, sort links kept in step with the filter form.

export function init(panel) {
  const { api, t, toast, errorToast, live } = panel;
  // Looked up each time: back and forward put a copy of the page from htmx's history in place.
  const filterForm = () => document.getElementById("library-filter");

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
    const form = filterForm();
    if (sortLink && form) {
      form.querySelector("[name=sort]").value = sortLink.dataset.sort;
      form.querySelector("[name=dir]").value = sortLink.dataset.dir;
    }
  });

  // Back and forward put htmx's copy of the page in place, whose filter form shows what was
  // first rendered (a radio's live checked state is not in the copy): set it from the address,
  // or the next keystroke sends the wrong filter.
  const syncForm = () => {
    const form = filterForm();
    if (!form) return;
    const query = new URLSearchParams(location.search);
    const q = form.querySelector("[name=q]");
    if (q) q.value = query.get("q") || "";
    const filter = query.get("filter") || "all";
    for (const radio of form.querySelectorAll("[name=filter]")) radio.checked = radio.value === filter;
    for (const [name, fallback] of [["sort", "name"], ["dir", "asc"]]) {  // pages/library.py
      const select = form.querySelector(`[name=${name}]`);
      const value = query.get(name);
      if (!select) continue;
      select.value = [...select.options].some((o) => o.value === value) ? value : fallback;
    }
  };
  document.body.addEventListener("htmx:historyRestore", syncForm);
  window.addEventListener("popstate", () => setTimeout(syncForm));

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
