// The history page: GET /api/history, newest first, filtered by event, paged; live on new events.

const EVENT_CLASS = { downloaded: "text-bg-success", failed: "text-bg-danger", grabbed: "text-bg-primary", deleted: "text-bg-secondary", upgraded: "text-bg-info", scan: "text-bg-secondary" };

export function init(panel) {
  const { api, t, errorToast, base } = panel;
  const body = document.getElementById("history-rows");
  if (!body) return;
  const select = document.getElementById("history-event");
  const pageSize = 50;
  let page = 1;
  let pages = 1;

  function cell(row, text, className = "") {
    const td = row.insertCell();
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  async function load() {
    const params = new URLSearchParams({ page: String(page), page_size: String(pageSize) });
    if (select.value) params.set("event", select.value);
    const container = document.getElementById("history");
    container.setAttribute("aria-busy", "true");
    let data;
    try {
      data = await api("GET", `api/history?${params}`);
    } catch (err) {
      if (err.status === 404) {
        document.getElementById("not-available").classList.remove("d-none");
        container.classList.add("d-none");
      } else {
        errorToast(err);
      }
      return;
    } finally {
      container.setAttribute("aria-busy", "false");
    }
    pages = Math.max(1, Math.ceil(data.total_records / pageSize));
    body.replaceChildren();
    if (!data.records.length) {
      const row = body.insertRow();
      const td = cell(row, t("history.empty"), "text-body-secondary");
      td.colSpan = 5;
    }
    for (const record of data.records) {
      const row = body.insertRow();
      row.dataset.event = record.event;
      const when = cell(row, "", "small text-nowrap");
      const time = document.createElement("time");
      time.dateTime = new Date(record.at * 1000).toISOString();
      time.textContent = panel.formatTime(record.at);
      when.append(time);
      const event = cell(row, "");
      const badge = document.createElement("span");
      badge.className = `badge ${EVENT_CLASS[record.event] || "text-bg-secondary"}`;
      badge.textContent = t(`history.event.${record.event}`);
      event.append(badge);
      const series = cell(row, "");
      if (record.series_key) {
        const link = document.createElement("a");
        const query = new URLSearchParams({ key: record.series_key });
        if (record.provider) query.set("provider", record.provider);
        link.href = `${base}series?${query}`;
        link.textContent = record.series_name || record.series_key;
        series.append(link);
      }
      cell(row, record.season !== null && record.episode !== null ? panel.episodeCode(record.season, record.episode) : "", "d-none d-sm-table-cell font-monospace");
      const message = record.message || "";
      const details = record.language && !message.includes(record.language) ? [record.language, message] : [message];
      cell(row, details.filter(Boolean).join(" · "), "d-none d-md-table-cell small history-message");
    }
    document.getElementById("history-page").textContent = t("common.page_of", { page, pages });
    document.querySelector("[data-history-page=prev]").disabled = page <= 1;
    document.querySelector("[data-history-page=next]").disabled = page >= pages;
  }

  select.addEventListener("change", () => {
    page = 1;
    load();
  });
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-history-page]");
    if (!button) return;
    page = Math.max(1, Math.min(pages, page + (button.dataset.historyPage === "next" ? 1 : -1)));
    load();
  });
  if (panel.live) {
    let timer = null;
    const later = () => {
      clearTimeout(timer);
      timer = setTimeout(() => { if (page === 1) load(); }, 500);
    };
    for (const type of ["download_complete", "download_failed", "scan_complete", "episode_files_removed"]) panel.live.on(type, later);
  }
  load();
}
