// A hand-written SVG bar chart of one /v1/series (no chart library: a few bars and labels).
import { h } from "./dom.js";
import { near } from "./format.js";

const W = 560, H = 160, PAD = { l: 8, r: 8, t: 10, b: 22 };

// `format` turns a point value (decimal string) into {text, exact} or a string. A `level`
// series (active nodes, GPUs) is a state sampled per bucket: its legend says now and peak,
// not a meaningless total.
export function barChart(title, series, format = (v) => v, { level = false } = {}) {
  const points = series?.points ?? [];
  const box = h("figure", { class: "chart", "data-metric": series?.metric ?? "" }, h("figcaption", {}, title));
  if (!points.length) { box.append(h("p", { class: "empty" }, "no data yet")); return box; }
  const values = points.map((p) => BigInt(p.value));
  const max = values.reduce((a, b) => (a > b ? a : b), 0n);
  const total = values.reduce((a, b) => a + b, 0n);
  const bw = (W - PAD.l - PAD.r) / points.length;
  const plotH = H - PAD.t - PAD.b;
  const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  points.forEach((p, i) => {
    // Heights in thousandths of the maximum: BigInt-exact whatever the amounts' size.
    const permille = max === 0n ? 0 : Number((values[i] * 1000n) / max);
    const bh = (plotH * permille) / 1000;
    const f = format(p.value);
    const label = `${new Date(Number(BigInt(p.t_ns) / 1000000n)).toISOString().slice(5, 16).replace("T", " ")}: ${f?.text ?? f}`;
    svg.append(h("svg:rect", { x: PAD.l + i * bw + 1, y: PAD.t + plotH - bh, width: Math.max(bw - 2, 1), height: Math.max(bh, values[i] > 0n ? 1 : 0), class: "bar" },
      h("svg:title", {}, label)));
  });
  svg.append(h("svg:line", { x1: PAD.l, x2: W - PAD.r, y1: PAD.t + plotH, y2: PAD.t + plotH, class: "axis" }));
  const start = new Date(Number(BigInt(points[0].t_ns) / 1000000n)).toISOString().slice(0, 16).replace("T", " ");
  svg.append(h("svg:text", { x: PAD.l, y: H - 6, class: "tick" }, start));
  svg.append(h("svg:text", { x: W - PAD.r, y: H - 6, class: "tick", "text-anchor": "end" }, "now"));
  const peak = format(max.toString()), first = format(level ? values[values.length - 1].toString() : total.toString());
  box.append(svg, h("p", { class: "chart-legend" }, level ? "now " : "total ", h("span", { title: first?.exact ?? "" }, first?.text ?? first), " · peak ", h("span", { title: peak?.exact ?? "" }, peak?.text ?? peak)));
  return box;
}

export const nearChart = (title, series) => barChart(title, series, (v) => near(v));
