// The system page: keep the log scrolled to its newest line.

export function init(panel) {
  const scroll = () => {
    const log = document.querySelector(".log-tail");
    if (log) log.scrollTop = log.scrollHeight;
  };
  scroll();
  document.body.addEventListener("htmx:afterSwap", scroll);
  return panel;
}
