// First-run setup and login: post the password, then go where the user wanted to go.

export function init(panel) {
  const { t, api, base } = panel;
  const form = document.querySelector("[data-auth-form]");
  if (!form) return;
  const kind = form.dataset.authForm;
  const alert = form.querySelector("[data-form-error]");
  const password = form.querySelector("#password");
  const confirm = form.querySelector("#confirm");

  function fieldError(input, message) {
    input.classList.add("is-invalid");
    const slot = form.querySelector(`[data-error-for="${input.name}"]`);
    slot.textContent = message;
    input.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    panel.clearErrors(form);
    alert.classList.add("d-none");
    if (kind === "setup") {
      if (password.value.length < 8) return fieldError(password, t("setup.too_short"));
      if (password.value !== confirm.value) return fieldError(confirm, t("setup.mismatch"));
    } else if (!password.value) {
      return fieldError(password, t("login.wrong"));
    }
    const button = form.querySelector("[type=submit]");
    button.disabled = true;
    try {
      if (kind === "setup") await api("POST", "api/auth/setup", { master_password: password.value });
      else await api("POST", "api/auth/login", { password: password.value });
      const next = form.dataset.next || "/";
      location.assign(base + next.replace(/^\/+/, ""));
    } catch (err) {
      button.disabled = false;
      if (err.status === 401) return fieldError(password, t("login.wrong"));
      if (err.status === 429) {
        // The wait the server names: a minute for too many tries, 15 for a lock-out.
        const seconds = Math.max(1, Math.ceil(err.retryAfter || 60));
        alert.textContent = seconds > 90 ? t("login.locked", { minutes: Math.ceil(seconds / 60) }) : t("login.limited", { seconds });
      } else if (err.status === 409) {
        location.assign(base + "login");
        return;
      } else if (err.status === 400 && err.details && err.details.length) {
        return fieldError(password, err.message);
      } else {
        alert.textContent = err.message;
      }
      alert.classList.remove("d-none");
    }
  });
}
