// Settings: every field validated inline against POST /api/config/validate while typing,
// saved with PUT /api/config; backups, API tokens, export, reset and the library folder.

export function init(panel) {
  const { api, t, toast, errorToast, confirmDialog, collectForm, clearErrors, showErrors } = panel;
  const form = document.getElementById("settings-form");
  const status = document.getElementById("settings-status");
  let timer = null;
  let generation = 0;
  const setStatus = (state, text) => {
    status.dataset.state = state;
    status.textContent = text;
  };

  // Returns true when the form is valid; marks every problem next to its field.
  async function validate(final = false) {
    const mine = ++generation;
    const { values, errors } = collectForm(form);
    let serverErrors = [];
    try {
      const result = await api("POST", "api/config/validate", values);
      serverErrors = result.valid ? [] : result.errors || [];
    } catch (err) {
      if (err.status === 400 && Array.isArray(err.details)) serverErrors = err.details;
      else throw err;
    }
    if (mine !== generation && !final) return null;  // a newer check is on its way
    // A field the browser could not parse has its own message; skip the server's for it.
    const local = new Set(errors.map((e) => e.path));
    const all = [...errors, ...serverErrors.filter((e) => !local.has(e.path))];
    clearErrors(form);
    const { unplaced, first } = showErrors(form, all);
    if (unplaced.length) setStatus("invalid", unplaced.map((e) => `${e.path}: ${e.message}`).join("; "));
    return { ok: all.length === 0, values, first };
  }

  form.addEventListener("input", () => {
    setStatus("dirty", t("settings.unsaved"));
    clearTimeout(timer);
    timer = setTimeout(() => validate().catch(() => {}), 350);
  });
  form.addEventListener("change", () => {
    setStatus("dirty", t("settings.unsaved"));
    clearTimeout(timer);
    timer = setTimeout(() => validate().catch(() => {}), 50);
  });
  for (const list of form.querySelectorAll("[data-language-list]")) {
    panel.initLanguageList(list, () => form.dispatchEvent(new Event("change")));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearTimeout(timer);
    const button = document.getElementById("settings-save");
    button.disabled = true;
    try {
      const result = await validate(true);
      if (!result.ok) {
        setStatus("invalid", t("settings.invalid"));
        toast(t("settings.invalid"), "danger");
        if (result.first) result.first.focus();
        return;
      }
      await api("PUT", "api/config", result.values);
      setStatus("saved", t("common.saved"));
      toast(t("settings.saved"), "success");
      panel.refreshFragment("#backups", `${location.pathname}?part=backups`);
    } catch (err) {
      if (err.status === 400 && Array.isArray(err.details)) {
        clearErrors(form);
        showErrors(form, err.details);
        setStatus("invalid", t("settings.invalid"));
      } else {
        errorToast(err);
      }
    } finally {
      button.disabled = false;
    }
  });

  // Library folder
  const directory = document.getElementById("directory-form");
  directory.addEventListener("submit", (event) => {
    event.preventDefault();
    panel.busyWhile(directory.querySelector("[type=submit]") || directory, () => saveDirectory());
  });
  async function saveDirectory() {
    clearErrors(directory);
    const path = directory.querySelector("[name=path]").value.trim();
    try {
      const result = await api("POST", "api/config/directory", { path });
      toast(`${t("common.saved")}: ${result.path}`, "success");
    } catch (err) {
      if (err.status === 400) {
        const details = Array.isArray(err.details) && err.details.length ? err.details : [{ path: "path", message: err.message }];
        showErrors(directory, details.map((d) => ({ ...d, path: "path" })));
        directory.querySelector("[name=path]").classList.add("is-invalid");
      } else {
        errorToast(err);
      }
    }
  }

  // Backups
  const reloadBackups = () => panel.refreshFragment("#backups", `${location.pathname}?part=backups`);
  document.addEventListener("click", async (event) => {
    const create = event.target.closest("[data-action=backup-create]");
    if (create) {
      await panel.busyWhile(create, async () => {
        try {
          await api("POST", "api/config/backups");
          toast(t("settings.backup_created"), "success");
          await reloadBackups();
        } catch (err) {
          errorToast(err);
        }
      });
      return;
    }
    const backup = event.target.closest("[data-backup-action]");
    if (backup) {
      const name = backup.dataset.name;
      const restore = backup.dataset.backupAction === "restore";
      const question = restore ? t("settings.backup_restore_confirm", { name }) : t("settings.backup_delete_confirm", { name });
      if (!(await confirmDialog(question, { danger: !restore }))) return;
      try {
        if (restore) {
          await api("POST", `api/config/backups/${encodeURIComponent(name)}/restore`);
          toast(t("settings.backup_restored"), "success");
          setTimeout(() => location.reload(), 600);
        } else {
          await api("DELETE", `api/config/backups/${encodeURIComponent(name)}`);
          toast(t("settings.backup_deleted"), "success");
          await reloadBackups();
        }
      } catch (err) {
        errorToast(err);
      }
      return;
    }
    const revoke = event.target.closest("[data-token-action=revoke]");
    if (revoke) {
      if (!(await confirmDialog(t("settings.token_revoke_confirm", { name: revoke.dataset.name })))) return;
      try {
        await api("DELETE", `api/auth/tokens/${encodeURIComponent(revoke.dataset.id)}`);
        await panel.refreshFragment("#tokens", `${location.pathname}?part=tokens`);
      } catch (err) {
        errorToast(err);
      }
      return;
    }
    const action = event.target.closest("[data-action=export], [data-action=reset]");
    if (!action) return;
    if (action.dataset.action === "export") {
      try {
        const data = await api("POST", "api/config/export");
        const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
        const link = document.createElement("a");
        link.href = URL.createObjectURL(blob);
        link.download = "aniworld-config.json";
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(link.href), 1000);
      } catch (err) {
        errorToast(err);
      }
    } else if (await confirmDialog(t("settings.reset_confirm"))) {
      try {
        await api("POST", "api/config/reset");
        toast(t("settings.reset_done"), "success");
        setTimeout(() => location.reload(), 600);
      } catch (err) {
        errorToast(err);
      }
    }
  });

  // API tokens
  const tokenForm = document.getElementById("token-form");
  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    panel.busyWhile(tokenForm.querySelector("[type=submit]") || tokenForm, () => createToken());
  });
  async function createToken() {
    clearErrors(tokenForm);
    const input = tokenForm.querySelector("[name=name]");
    try {
      const created = await api("POST", "api/auth/tokens", { name: input.value.trim() });
      document.getElementById("token-value").textContent = created.token;
      document.getElementById("token-created").classList.remove("d-none");
      input.value = "";
      await panel.refreshFragment("#tokens", `${location.pathname}?part=tokens`);
    } catch (err) {
      if (err.status === 400) {
        input.classList.add("is-invalid");
        tokenForm.querySelector("[data-error-for=name]").textContent = err.message;
      } else {
        errorToast(err);
      }
    }
  }
}
