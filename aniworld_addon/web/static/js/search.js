// Add a series from a search result, or match an unmatched folder to one.

export function init(panel) {
  const { api, t, toast, errorToast, base } = panel;
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-action=add], [data-action=match]");
    if (!button) return;
    const { provider, key, name } = button.dataset;
    button.disabled = true;
    const spinner = document.createElement("span");
    spinner.className = "spinner-border spinner-border-sm ms-1";
    spinner.setAttribute("aria-hidden", "true");
    button.append(spinner);
    try {
      let detail;
      if (button.dataset.action === "add") {
        detail = await api("POST", "api/anime", { provider, key });
        toast(t("add.added", { name: detail.name || name }), "success");
      } else {
        const folder = document.getElementById("search-results").dataset.folder;
        detail = await api("POST", `api/anime/${encodeURIComponent(folder)}/match`, { provider, key });
        toast(t("match.matched", { folder }), "success");
      }
      const query = new URLSearchParams({ key: detail.key, provider: detail.provider });
      location.assign(`${base}series?${query}`);
    } catch (err) {
      button.disabled = false;
      spinner.remove();
      errorToast(err);
    }
  });
}
