// The test bench: an Exotel query (pasted, or one of the samples from the project's fixtures)
// run as a dry run (POST /v1/flows/{flow}/try) against any version of a flow's plugin: nothing
// is recorded and the live flow's figures do not move.

import { api, seg } from "./api.js";
import { h, replace, table, facts, logList, field, badge, micros } from "./dom.js";

export async function benchPage(el, selected) {
  const [{ items: flows }, samples] = await Promise.all([
    api("GET", "/v1/flows"),
    fetch("/console/samples.json", { cache: "no-store" }).then((r) => r.json()),
  ]);
  if (flows.length === 0) {
    replace(el, h("h1", {}, "Test bench"), h("p", { class: "muted" }, "Create a flow first (Flows)."));
    return;
  }
  const flow = h("select", {}, flows.map((f) => h("option", { value: f.name, selected: f.name === selected }, f.name)));
  const version = h("select", {});
  const sample = h("select", {}, h("option", { value: "" }, "(choose a sample)"),
    samples.map((x) => h("option", { value: x.name }, x.name)));
  const text = h("textarea", { rows: 5, spellcheck: "false", required: true, placeholder: "CallSid=...&CallFrom=...&digits=%221%22" });
  const out = h("div", { id: "bench-result", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert", id: "bench-error" });

  const fillVersions = async () => {
    const f = flows.find((x) => x.name === flow.value);
    const { items } = await api("GET", `/v1/plugins/${seg(f.plugin)}/versions`);
    replace(version, h("option", { value: "" }, `live (v${f.version})`),
      items.map((v) => h("option", { value: v.version }, `v${v.version}${v.version === f.version ? " (live)" : ""}${f.canary && f.canary.version === v.version ? " (canary)" : ""}`)));
  };
  flow.addEventListener("change", fillVersions);
  sample.addEventListener("change", () => {
    const found = samples.find((x) => x.name === sample.value);
    if (found) text.value = found.query;
  });
  const form = h("form", { id: "bench-form" },
    h("div", { class: "row" },
      field("bench-flow", "Flow", flow),
      field("bench-version", "Version", version),
      field("bench-sample", "Sample", sample)),
    h("p", {}, h("label", { for: "bench-query" }, "Exotel query string")),
    text,
    h("p", {}, h("button", { type: "submit", id: "bench-run" }, "Run (dry run)")));
  text.id = "bench-query";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    replace(out, h("p", { class: "muted" }, "Running…"));
    const body = { query: text.value.trim().replace(/^\?/, "") };
    if (version.value) body.version = Number(version.value);
    try {
      const r = await api("POST", `/v1/flows/${seg(flow.value)}/try`, body);
      replace(out, result(r));
    } catch (e) {
      replace(out);
      error.textContent = e.message;
    }
  });
  replace(el,
    h("h1", {}, "Test bench"),
    h("p", { class: "muted" }, "A dry run: nothing is recorded, the flow's figures and key-value data do not change."),
    form, error, out);
  await fillVersions();
}

function result(r) {
  const params = Object.entries(r.params || {});
  return h("div", { class: "panel" },
    h("h2", {}, "Result"),
    facts([
      ["Version", `v${r.version}`],
      ["Branch", h("span", { id: "bench-branch" }, badge(r.branch))],
      ["Outcome", h("span", { id: "bench-outcome" }, r.outcome)],
      r.answer ? ["Answer", h("code", { id: "bench-answer" }, r.answer)] : null,
      r.reason ? ["Reason", r.reason] : null,
      r.error ? ["Error", h("span", { class: "error" }, r.error)] : null,
      ["Fuel", h("span", { id: "bench-fuel" }, Number(r.fuel_used).toLocaleString())],
      ["Time", micros(r.elapsed_us)],
    ].filter(Boolean)),
    h("h3", {}, "Log"),
    logList(r.log, r.log_dropped),
    r.outbound && r.outbound.length ? [h("h3", {}, "Outbound requests"),
      table(["Method", "Host", "Status", "Bytes out#", "Bytes in#", "ms#"], r.outbound.map((o) => [
        o.method, o.host, String(o.status ?? o.error ?? ""), String(o.bytes_out), String(o.bytes_in), String(o.ms),
      ]))] : null,
    h("h3", {}, "Call details as the plugin saw them"),
    params.length ? table(["Parameter", "Value"], params.map(([k, v]) => [h("code", {}, k), h("code", {}, v)]), { id: "bench-params" })
      : h("p", { class: "muted" }, "None."));
}
