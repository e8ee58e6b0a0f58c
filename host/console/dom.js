// Small DOM helpers. Everything the API returns is put into the page as text (textContent),
// never as markup: plugin log lines and reasons are the tenant's data.

const SVG_NS = "http://www.w3.org/2000/svg";

/** Creates an element: h("button", {type: "button", onclick: f}, "Text", child). */
export function h(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** The same for SVG elements (presentation attributes only: no inline styles). */
export function s(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

function fill(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      for (const [k, v] of Object.entries(value)) {
        if (v !== undefined && v !== null) el.dataset[k] = v;
      }
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table from column headers and rows of cells (strings or nodes); numeric columns end in "#". */
export function table(headers, rows, attrs = {}) {
  const numeric = headers.map((x) => x.endsWith("#"));
  const label = (x) => (x.endsWith("#") ? x.slice(0, -1) : x);
  return h("table", attrs,
    h("thead", {}, h("tr", {}, headers.map((x, i) =>
      h("th", { scope: "col", class: numeric[i] ? "num" : null }, label(x))))),
    h("tbody", {}, rows.map((cells) =>
      h("tr", {}, cells.map((c, i) => h("td", { class: numeric[i] ? "num" : null }, c))))));
}

/** A definition list of facts: [[term, value], ...]. */
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.flatMap(([dt, dd]) => [h("dt", {}, dt), h("dd", {}, dd)]));
}

/** A plugin's log lines, as a list. */
export function logList(lines, dropped = 0) {
  if (!lines || lines.length === 0) return h("p", { class: "muted" }, "No log lines.");
  return h("div", {},
    h("ul", { class: "log" }, lines.map((l) =>
      h("li", {}, h("span", { class: "level" }, l.level), " ", l.message))),
    dropped ? h("p", { class: "muted" }, `${dropped} more lines were dropped past the caps.`) : null);
}

/** A labelled form field: returns [label, control]. */
export function field(id, text, control) {
  control.id = id;
  if (!control.name) control.name = id;
  return h("span", {}, h("label", { for: id }, text), control);
}

export function badge(text) {
  const kind = ["success", "decided", "recorded"].includes(text) ? text : "fail";
  return h("span", { class: `badge ${kind}` }, text);
}

export function time(ms) {
  if (ms === undefined || ms === null) return "—";
  const d = new Date(ms);
  return d.toLocaleString(undefined, { hour12: false });
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

export function micros(us) {
  if (us === undefined || us === null) return "—";
  return us < 1000 ? `${us} µs` : `${(us / 1000).toFixed(2)} ms`;
}

/** Announces a short message in the status line (read out by screen readers). */
let announced;

export function announce(text) {
  const el = document.getElementById("status");
  el.textContent = text;
  clearTimeout(announced);
  announced = setTimeout(() => { el.textContent = ""; }, 8000);
}
