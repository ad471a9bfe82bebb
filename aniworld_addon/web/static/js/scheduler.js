// The scheduler page: GET/POST /api/scheduler/config, next and last runs, rescan now.

export function init(panel) {
  const { api, t, toast, errorToast, collectForm, clearErrors, showErrors } = panel;
  const form = document.getElementById("scheduler-form");
  if (!form) return;
  const status = document.getElementById("settings-status");

  function notAvailable() {
    document.getElementById("not-available").classList.remove("d-none");
    document.getElementById("scheduler-body").classList.add("d-none");
  }

  function runs(target, values) {
    const body = document.getElementById(target);
    body.replaceChildren();
    const entries = Object.entries(values || {});
    if (!entries.length) {
      const row = body.insertRow();
      const cell = row.insertCell();
      cell.colSpan = 2;
      cell.className = "text-body-secondary";
      cell.textContent = t("common.none");
      return;
    }
    for (const [job, when] of entries) {
      const row = body.insertRow();
      const name = document.createElement("th");
      name.scope = "row";
      name.className = "fw-normal";
      name.textContent = t(`scheduler.job.${job}`);
      row.append(name);
      let text = "—";
      const moment = when && typeof when === "object" ? when.at || when.finished_at || when.time : when;
      if (typeof moment === "number") text = panel.formatTime(moment);
      else if (typeof moment === "string" && !Number.isNaN(Date.parse(moment))) text = panel.formatTime(Date.parse(moment) / 1000);
      row.insertCell().textContent = text;
    }
  }

  // What the user typed and has not saved yet: a live refresh (a scan completing) must not
  // put the stored values back over it.
  let edited = false;

  function show(config) {
    if (!edited) fill(config);
    document.getElementById("scheduler-state").textContent = config.running ? t("scheduler.state_running") : t("scheduler.state_stopped");
    runs("next-runs", config.next_runs);
    runs("last-runs", config.last_runs);
  }

  function fill(config) {
    for (const field of form.querySelectorAll("[name][data-type]")) {
      const value = config[field.name.split(".")[1]];
      if (field.dataset.type === "bool") field.checked = Boolean(value);
      else field.value = value === null || value === undefined ? "" : String(value);
    }
  }

  async function load() {
    try {
      show(await api("GET", "api/scheduler/config"));
    } catch (err) {
      if (err.status === 404) notAvailable();
      else errorToast(err);
    }
  }

  async function validate() {
    const { values, errors } = collectForm(form);
    let serverErrors = [];
    if (!errors.length) {
      const result = await api("POST", "api/config/validate", values);
      serverErrors = result.valid ? [] : result.errors || [];
    }
    const all = [...errors, ...serverErrors];
    clearErrors(form);
    showErrors(form, all);
    return { ok: all.length === 0, values };
  }

  let timer = null;
  form.addEventListener("input", () => {
    edited = true;
    clearTimeout(timer);
    timer = setTimeout(() => validate().catch(() => {}), 350);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const { ok, values } = await validate();
      if (!ok) {
        status.textContent = t("settings.invalid");
        return;
      }
      const saved = await api("POST", "api/scheduler/config", values.scheduler);
      edited = false;
      show(saved);
      status.textContent = t("common.saved");
      toast(t("settings.saved"), "success");
    } catch (err) {
      if (err.status === 400 && Array.isArray(err.details)) {
        clearErrors(form);
        showErrors(form, err.details.map((d) => ({ ...d, path: d.path.startsWith("scheduler.") ? d.path : `scheduler.${d.path}` })));
      } else if (err.status === 404) {
        notAvailable();
      } else {
        errorToast(err);
      }
    }
  });
  document.addEventListener("click", async (event) => {
    const trigger = event.target.closest("[data-action=trigger-rescan]");
    if (!trigger) return;
    await panel.busyWhile(trigger, async () => {
      try {
        await api("POST", "api/scheduler/trigger-rescan");
        toast(t("library.rescan_started"), "info");
      } catch (err) {
        errorToast(err);
      }
    });
  });
  if (panel.live) {
    panel.live.on("scan_complete", load);
    panel.live.on("scheduled_rescan_complete", load);
  }
  load();
}
