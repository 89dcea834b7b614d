// A tiny element builder: text always goes through textContent, never innerHTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElementNS(tag.startsWith("svg:") ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag.replace(/^svg:/, ""));
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// An amount `{text, exact}` as text with the exact value on hover.
export const amount = (a) => (a == null ? "—" : h("span", { class: "amount", title: a.exact }, a.text));

export const link = (href, text) => h("a", { href }, text ?? "—");
export const nodeLink = (id) => (id == null ? "—" : link(`#/node/${id}`, `node ${id}`));
export const jobLink = (id) => link(`#/job/${id}`, `job ${id}`);
export const channelLink = (id) => link(`#/channel/${id}`, `channel ${id}`);
export const modelLink = (id, name) => (id == null ? "—" : link(`#/model/${encodeURIComponent(id)}`, name ?? id));
export const accountLink = (id) => (id == null ? "—" : link(`#/account/${encodeURIComponent(id)}`, id));
export const operatorLink = (id) => (id == null ? "—" : link(`#/operator/${encodeURIComponent(id)}`, id));

export function table(headers, rows, empty = "none yet") {
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c ?? "—"))))
      : h("tr", {}, h("td", { colspan: headers.length, class: "empty" }, empty))));
}

// A definition list of [label, value] pairs.
export const facts = (pairs) => h("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));

export const section = (title, ...body) => h("section", {}, h("h2", {}, title), ...body);
export const badge = (text, kind = text) => h("span", { class: `badge ${kind}` }, text);
