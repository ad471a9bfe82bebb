// The queue: commands, per-item and bulk actions, drag-and-drop and keyboard reorder,
// live progress bars; the sections are re-read (HTMX) whenever the WebSocket says they changed.

export function init(panel) {
  const { api, t, toast, errorToast, announce, confirmDialog, live } = panel;
  const selected = new Set();
  let busy = 0;          // a drag or keyboard move is in progress: hold refreshes back
  // A pointer is down on a drag handle: a refresh now would replace the row before the browser
  // starts the drag (dragstart comes only after the pointer moves), and the drag would be lost.
  let armed = false;
  let refreshWanted = false;
  let timer = null;
  let keptFocus = null;  // {selector, row, action} of the button a click disabled

  const root = () => document.getElementById("queue-root");
  const pendingBody = () => document.querySelector("[data-pending-list]");
  const rows = () => [...(pendingBody()?.querySelectorAll("tr[data-item-id]") || [])];

  // ---- refresh ----------------------------------------------------------------------------
  async function refresh() {
    if (busy || armed) {
      refreshWanted = true;
      return;
    }
    const active = document.activeElement;
    // A button the user pressed was disabled at once, which moved the focus to <body>: the
    // click kept where it was (keepFocus), with the row's place for when the row is gone.
    const kept = keptFocus;
    keptFocus = null;
    const focus = kept ? kept.selector : active && active.id ? `#${CSS.escape(active.id)}` : focusKey(active);
    await panel.refreshFragment("#queue-root", location.pathname);
    for (const box of document.querySelectorAll("[data-select]")) box.checked = selected.has(Number(box.value));
    for (const id of [...selected]) if (!document.querySelector(`[data-select][value="${id}"]`)) selected.delete(id);
    syncSelectAll();
    const element = focus ? document.querySelector(focus) : null;
    if (element) {
      element.focus();
    } else if (kept && kept.row !== null) {
      // The row went (removed): the next one's button, else the previous one's.
      const left = rows();
      const near = left[Math.min(kept.row, left.length - 1)];
      const target = near && (near.querySelector(`[data-item-action="${kept.action}"]`) || near.querySelector("button"));
      if (target) target.focus();
    }
  }
  function keepFocus(element) {
    const row = element.closest("tr[data-item-id]");
    keptFocus = {
      selector: focusKey(element),
      row: row ? rows().indexOf(row) : null,
      action: element.dataset.itemAction || null,
    };
  }
  function focusKey(element) {
    if (!element || !element.closest) return null;
    const row = element.closest("[data-item-id]");
    if (row && element.dataset.itemAction) return `[data-item-id="${row.dataset.itemId}"] [data-item-action="${element.dataset.itemAction}"]`;
    if (element.dataset.queueCommand) return "[data-queue-command]";
    return null;
  }
  function scheduleRefresh(delay = 250) {
    clearTimeout(timer);
    timer = setTimeout(refresh, delay);
  }

  // ---- selection --------------------------------------------------------------------------
  function syncSelectAll() {
    for (const all of document.querySelectorAll("[data-select-all]")) {
      const boxes = [...document.querySelectorAll(`[data-select="${all.dataset.selectAll}"]`)];
      const checked = boxes.filter((b) => b.checked).length;
      all.checked = boxes.length > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    }
  }
  document.addEventListener("change", (event) => {
    const all = event.target.closest("[data-select-all]");
    if (all) {
      for (const box of document.querySelectorAll(`[data-select="${all.dataset.selectAll}"]`)) {
        box.checked = all.checked;
        if (all.checked) selected.add(Number(box.value));
        else selected.delete(Number(box.value));
      }
    }
    const box = event.target.closest("[data-select]");
    if (box) {
      if (box.checked) selected.add(Number(box.value));
      else selected.delete(Number(box.value));
    }
    syncSelectAll();
  });
  const idsIn = (section) => [...document.querySelectorAll(`[data-select="${section}"]:checked`)].map((b) => Number(b.value));

  // ---- actions ----------------------------------------------------------------------------
  async function run(action) {
    try {
      await action();
    } catch (err) {
      errorToast(err);
    }
    scheduleRefresh(0);
  }
  async function removeIds(ids) {
    if (!ids.length) return;
    if (ids.length > 1 && !(await confirmDialog(t("queue.confirm_remove", { count: ids.length })))) return;
    await run(async () => {
      await api("DELETE", "api/queue", { item_ids: ids });
      for (const id of ids) selected.delete(id);
    });
  }

  document.addEventListener("click", async (event) => {
    const command = event.target.closest("[data-queue-command]");
    if (command) {
      keepFocus(command);
      command.disabled = true;
      await run(() => api("POST", `api/queue/${command.dataset.queueCommand}`));
      return;
    }
    const action = event.target.closest("[data-queue-action]");
    if (action) {
      const kind = action.dataset.queueAction;
      if (kind === "retry-all") await run(() => api("POST", "api/queue/retry", { item_ids: [] }));
      if (kind.startsWith("clear-") && (await confirmDialog(t("queue.confirm_clear")))) {
        await run(() => api("DELETE", `api/queue/${kind.slice(6)}`));
      }
      return;
    }
    const item = event.target.closest("[data-item-action]");
    if (item) {
      const id = Number(item.dataset.id);
      keepFocus(item);
      item.disabled = true;
      if (item.dataset.itemAction === "remove") await run(() => api("DELETE", `api/queue/${id}`));
      if (item.dataset.itemAction === "retry") await run(() => api("POST", "api/queue/retry", { item_ids: [id] }));
      return;
    }
    const bulk = event.target.closest("[data-bulk]");
    if (bulk) {
      const ids = idsIn(bulk.dataset.sectionTarget);
      if (!ids.length) {
        toast(t("series.nothing_selected"), "warning");
        return;
      }
      if (bulk.dataset.bulk === "remove") await removeIds(ids);
      if (bulk.dataset.bulk === "retry") await run(() => api("POST", "api/queue/retry", { item_ids: ids }));
    }
  });

  // ---- reorder ----------------------------------------------------------------------------
  function renumber() {
    rows().forEach((row, index) => {
      row.querySelector("[data-position]").textContent = String(index + 1);
    });
  }
  async function saveOrder(moved) {
    const order = rows().map((row) => Number(row.dataset.itemId));
    const rank = { HIGH: 0, NORMAL: 1, LOW: 2 };
    const priorities = rows().map((row) => rank[row.dataset.priority] ?? 1);
    const conflict = priorities.some((p, i) => i > 0 && p < priorities[i - 1]);
    try {
      await api("POST", "api/queue/reorder", { item_ids: order });
      toast(conflict ? t("queue.priority_wins") : t("queue.reordered"), conflict ? "warning" : "success");
      if (moved) announce(t("queue.dropped", { name: moved.dataset.label, position: rows().indexOf(moved) + 1 }));
    } catch (err) {
      errorToast(err);
    }
    busy = 0;
    scheduleRefresh(0);
  }

  // Drag and drop: only from the handle, so text in a row can still be selected.
  let dragged = null;
  document.addEventListener("pointerdown", (event) => { armed = Boolean(event.target.closest("[data-drag-handle]")); });
  function disarm() {
    armed = false;
    if (refreshWanted && !busy) {
      refreshWanted = false;
      scheduleRefresh(0);
    }
  }
  document.addEventListener("pointerup", disarm);
  document.addEventListener("pointercancel", disarm);  // the browser took over (a drag began)
  document.addEventListener("dragstart", (event) => {
    const row = event.target.closest && event.target.closest(".pending-item");
    if (!row) return;
    if (!armed) {
      event.preventDefault();
      return;
    }
    dragged = row;
    busy = 1;  // holds refreshes from here on, in place of armed
    armed = false;
    row.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", row.dataset.itemId);
  });
  function clearMarks() {
    for (const row of rows()) row.classList.remove("drop-before", "drop-after");
  }
  document.addEventListener("dragover", (event) => {
    if (!dragged) return;
    const row = event.target.closest && event.target.closest(".pending-item");
    if (!row || row === dragged) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    const box = row.getBoundingClientRect();
    const after = event.clientY > box.top + box.height / 2;
    clearMarks();
    row.classList.add(after ? "drop-after" : "drop-before");
  });
  document.addEventListener("drop", (event) => {
    if (!dragged) return;
    const row = event.target.closest && event.target.closest(".pending-item");
    event.preventDefault();
    if (row && row !== dragged) {
      const after = row.classList.contains("drop-after");
      row.parentElement.insertBefore(dragged, after ? row.nextSibling : row);
      renumber();
      const moved = dragged;
      finishDrag();
      busy = 1;
      saveOrder(moved);
      return;
    }
    finishDrag();
  });
  function finishDrag() {
    clearMarks();
    if (dragged) dragged.classList.remove("dragging");
    dragged = null;
    busy = 0;
    if (refreshWanted) {
      refreshWanted = false;
      scheduleRefresh(0);
    }
  }
  document.addEventListener("dragend", () => {
    if (dragged) finishDrag();
  });

  // Keyboard: Space/Enter on a handle grabs the row, arrows move it, Space/Enter drops,
  // Escape puts it back. Alt+Up/Down moves the focused row at once.
  let grabbed = null;
  let original = null;
  function move(row, delta) {
    const list = rows();
    const index = list.indexOf(row);
    const target = index + delta;
    if (target < 0 || target >= list.length) return false;
    if (delta < 0) row.parentElement.insertBefore(row, list[target]);
    else row.parentElement.insertBefore(row, list[target].nextSibling);
    renumber();
    row.querySelector("[data-drag-handle]").focus();
    announce(t("queue.moved", { name: row.dataset.label, position: target + 1, total: list.length }));
    return true;
  }
  function release(row, keep) {
    row.classList.remove("grabbed");
    row.querySelector("[data-drag-handle]").setAttribute("aria-pressed", "false");
    grabbed = null;
    if (keep) {
      saveOrder(row);
    } else {
      for (const id of original) pendingBody().append(pendingBody().querySelector(`tr[data-item-id="${id}"]`));
      renumber();
      row.querySelector("[data-drag-handle]").focus();
      announce(t("queue.cancelled"));
      busy = 0;
      if (refreshWanted) scheduleRefresh(0);
    }
  }
  document.addEventListener("keydown", (event) => {
    const handle = event.target.closest && event.target.closest("[data-drag-handle]");
    const row = event.target.closest && event.target.closest(".pending-item");
    if (event.altKey && row && (event.key === "ArrowUp" || event.key === "ArrowDown")) {
      event.preventDefault();
      busy = 1;
      if (move(row, event.key === "ArrowUp" ? -1 : 1)) saveOrder(row);
      else busy = 0;
      return;
    }
    if (!handle) return;
    const current = handle.closest(".pending-item");
    if (event.key === " " || event.key === "Enter") {
      event.preventDefault();
      if (grabbed === current) {
        release(current, true);
      } else {
        if (grabbed) release(grabbed, false);
        grabbed = current;
        busy = 1;
        original = rows().map((r) => r.dataset.itemId);
        current.classList.add("grabbed");
        handle.setAttribute("aria-pressed", "true");
        announce(t("queue.grabbed", { name: current.dataset.label, position: rows().indexOf(current) + 1, total: rows().length }));
      }
    } else if (grabbed === current && (event.key === "ArrowUp" || event.key === "ArrowDown")) {
      event.preventDefault();
      move(current, event.key === "ArrowUp" ? -1 : 1);
    } else if (grabbed === current && event.key === "Escape") {
      event.preventDefault();
      release(current, false);
    }
  });
  document.addEventListener("focusout", () => {
    // Leaving a grabbed row (Tab, a click elsewhere) drops it where it is. Checked a tick later:
    // moving the row in the DOM blurs its handle for a moment, and move() focuses it again.
    if (!grabbed) return;
    setTimeout(() => {
      if (grabbed && document.hasFocus() && !grabbed.contains(document.activeElement)) release(grabbed, true);
    }, 0);
  });

  // ---- shortcuts --------------------------------------------------------------------------
  document.addEventListener("panel:shortcut", async ({ detail }) => {
    const key = detail.key;
    if (key === "p") document.querySelector("[data-shortcut-pause]")?.click();
    else if (key === "r") document.querySelector("[data-shortcut-retry]")?.click();
    else if (key === "a") {
      const all = document.querySelector('[data-select-all="pending"]');
      if (all) {
        all.checked = true;
        all.dispatchEvent(new Event("change", { bubbles: true }));
      }
    } else if (key === "Delete") {
      const ids = [...document.querySelectorAll("[data-select]:checked")].map((b) => Number(b.value));
      if (ids.length) await removeIds(ids);
    }
  });

  // ---- live -------------------------------------------------------------------------------
  if (!live) return;
  const milestones = new Map();
  live.on("download_progress", (data) => {
    const item = document.querySelector(`.active-item[data-item-id="${data.item_id}"]`);
    if (!item) {
      scheduleRefresh();
      return;
    }
    const progress = data.progress || {};
    const percent = Math.max(0, Math.min(100, Math.round((progress.percent || 0) * 10) / 10));
    const bar = item.querySelector("[data-progress-for]");
    bar.setAttribute("aria-valuenow", String(percent));
    const inner = bar.querySelector(".progress-bar");
    inner.style.width = `${percent}%`;
    inner.textContent = `${percent} %`;
    inner.classList.toggle("progress-bar-animated", percent < 100);
    const mb = (v) => (v === null || v === undefined ? "" : `${Number(v).toFixed(1)} MiB`);
    item.querySelector("[data-downloaded]").textContent = progress.total_mb ? `${mb(progress.downloaded_mb)} / ${mb(progress.total_mb)}` : mb(progress.downloaded_mb);
    item.querySelector("[data-speed]").textContent = progress.speed_mbps ? `${Number(progress.speed_mbps).toFixed(2)} MB/s` : "";
    item.querySelector("[data-eta]").textContent = progress.eta_seconds ? t("queue.eta", { eta: panel.formatDuration(progress.eta_seconds) }) : "";
    // Screen readers hear quarter steps, not every percent.
    const step = Math.floor(percent / 25);
    if (step > (milestones.get(data.item_id) ?? 0) && step < 4) {
      milestones.set(data.item_id, step);
      announce(t("js.progress", { name: item.dataset.label, percent: step * 25 }));
    }
  });
  for (const type of ["download_started", "download_complete", "download_failed", "queue_status",
    "queue_started", "queue_stopped", "queue_paused", "queue_resumed", "reconnected"]) {
    live.on(type, () => scheduleRefresh());
  }
}
