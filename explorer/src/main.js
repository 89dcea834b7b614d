// The explorer: one page, client-side hash routes, re-rendered on every indexed block
// from the indexer's event stream (no polling).
import { onBlocks, get } from "./api.js";
import { h } from "./dom.js";
import * as pages from "./pages.js";
import { walletBar } from "./wallet-ui.js";

const routes = {
  "": () => pages.overview(),
  node: (id) => pages.node(id),
  operator: (id) => pages.operator(id),
  job: (id) => pages.job(id),
  channels: (state) => pages.channels(state),
  channel: (id) => pages.channel(id),
  model: (id) => pages.model(id),
  account: (id) => pages.account(id),
  search: (q) => pages.search(q),
};

// Errors are shown on the page (and recorded for the browser tests), never swallowed.
const errors = [];
function showError(message) {
  errors.push(message);
  const box = document.getElementById("errors");
  box.hidden = false;
  box.replaceChildren(...errors.slice(-3).map((m) => h("div", { class: "error" }, m)));
}
window.addEventListener("error", (e) => showError(`error: ${e.message}`));
window.addEventListener("unhandledrejection", (e) => showError(`error: ${e.reason?.message ?? e.reason}`));

function parseRoute() {
  const [, name = "", ...rest] = location.hash.replace(/^#/, "").split("/");
  return { name, arg: rest.length ? decodeURIComponent(rest.join("/")) : undefined };
}

let rendering = null, again = false, interacting = () => false;
// Re-render the current route; a render asked for while one runs runs once after it.
async function render() {
  if (rendering) { again = true; return rendering; }
  rendering = (async () => {
    do {
      again = false;
      const { name, arg } = parseRoute();
      const page = routes[name];
      const main = document.getElementById("page");
      try {
        const el = page ? await page(arg) : h("div", { class: "page", "data-page": "not-found" }, h("h1", {}, "No such page"), h("p", {}, h("a", { href: "#/" }, "network overview")));
        // Keep a form the user is typing in: the page refreshes on the next block instead.
        if (!interacting()) { main.replaceChildren(el); document.body.dataset.hash = location.hash || "#/"; }
      } catch (e) {
        showError(`cannot load this page: ${e.message}`);
      }
    } while (again);
    rendering = null;
  })();
  return rendering;
}

function setStatus(text, ok) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = ok ? "" : "error";
}

async function start() {
  document.getElementById("nav-search").replaceChildren(pages.searchForm());
  interacting = () => document.activeElement?.closest?.("#page form") != null;
  const bar = await walletBar(render).catch((e) => { showError(`wallet: ${e.message}`); return null; });
  if (bar) document.getElementById("wallet").replaceChildren(bar);
  window.addEventListener("hashchange", render);
  await render();
  onBlocks(async (height) => {
    try {
      const s = await get("/v1/status");
      setStatus(`indexed height ${s.indexed_height ?? height} · chain head ${s.chain_head ?? "—"} · lag ${s.lag ?? "—"} · live`, true);
    } catch (e) { setStatus(`cannot reach the indexer: ${e.message}`, false); }
    render();
  }, (open) => { if (!open) setStatus("event stream interrupted; reconnecting…", false); });
}
start();
