// Line plots drawn as SVG, by hand: a time axis (minutes), a value axis from zero, one
// polyline per series. Colours and dashes are SVG presentation attributes (the console's
// Content-Security-Policy allows no inline styles). Each plot also carries its figures as a
// table inside <details>, for screen readers and for copying.

import { h, s } from "./dom.js";

const W = 640;
const H = 240;
const PAD = { left: 56, right: 24, top: 12, bottom: 28 };
const PALETTE = ["#1f4e8c", "#d1495b", "#2e8b57", "#edae49", "#6a4c93", "#00798c", "#8c564b", "#444"];

/**
 * A plot: `series` is [{name, points: [[at_ms, value], ...], dashed, version, group}], drawn
 * between `from` and `to` (ms); series of one `group` share a colour. `format` formats values on
 * the axis and in the table.
 */
export function linePlot({ title, series, from, to, format = String, unit = "" }) {
  const max = Math.max(1, ...series.flatMap((x) => x.points.map((p) => p[1])));
  const top = niceCeiling(max);
  const x = (t) => PAD.left + ((t - from) / Math.max(1, to - from)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
  const svg = s("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}: ${series.length} series`,
  }, s("title", {}, title));
  for (const frac of [0, 0.25, 0.5, 0.75, 1]) {
    const v = top * frac;
    svg.append(
      s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), stroke: "#d0d7de", "stroke-width": 1 }),
      s("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#5a6370" }, format(v)));
  }
  const step = tickStep(to - from);
  for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
    svg.append(
      s("line", { x1: x(t), x2: x(t), y1: H - PAD.bottom, y2: H - PAD.bottom + 4, stroke: "#5a6370" }),
      s("text", { x: x(t), y: H - 8, "text-anchor": "middle", "font-size": 11, fill: "#5a6370" }, clock(t)));
  }
  svg.append(s("line", {
    x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom, stroke: "#5a6370",
  }));
  series.forEach((line, i) => {
    const colour = PALETTE[(line.group ?? i) % PALETTE.length];
    line.colour = colour;
    const attrs = {
      fill: "none", stroke: colour, "stroke-width": 2,
      "stroke-dasharray": line.dashed ? "6 4" : null,
      class: "series", dataset: { series: line.name, version: line.version },
    };
    if (line.points.length === 1) {
      const [t, v] = line.points[0];
      svg.append(s("circle", { ...attrs, cx: x(t), cy: y(v), r: 3, fill: colour }));
    } else {
      svg.append(s("polyline", { ...attrs, points: line.points.map(([t, v]) => `${x(t)},${y(v)}`).join(" ") }));
    }
    for (const [t, v] of line.points) {
      svg.append(s("circle", { cx: x(t), cy: y(v), r: 2, fill: colour },
        s("title", {}, `${line.name} at ${clock(t)}: ${format(v)}${unit}`)));
    }
  });
  const legend = h("ul", { class: "legend" }, series.map((line) =>
    h("li", { dataset: { series: line.name } },
      s("svg", { width: 24, height: 8, "aria-hidden": "true" },
        s("line", { x1: 0, x2: 24, y1: 4, y2: 4, stroke: line.colour, "stroke-width": 3,
          "stroke-dasharray": line.dashed ? "6 4" : null })),
      " ", line.name)));
  const rows = series.flatMap((line) => line.points.map(([t, v]) => [line.name, clock(t), `${format(v)}${unit}`]));
  return h("figure", { class: "plot" },
    h("figcaption", {}, title),
    series.length ? svg : h("p", { class: "muted" }, "No calls in this window."),
    series.length ? legend : null,
    series.length ? h("details", {}, h("summary", {}, "Figures"),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Series"), h("th", {}, "Minute"), h("th", {}, "Value"))),
        h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))))) : null);
}

/** 1, 2 or 5 times a power of ten, at or above `v`. */
function niceCeiling(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** The spacing of time ticks for a window: about six ticks. */
function tickStep(span) {
  const minutes = [1, 5, 10, 15, 30, 60, 120, 240];
  const m = minutes.find((x) => span / (x * 60000) <= 8) ?? 240;
  return m * 60000;
}

function clock(t) {
  const d = new Date(t);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}
