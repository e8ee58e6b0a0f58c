// Decision records: the log with filters (flow, outcome, CallSid, time), paged by cursor, and
// one call's history.

import { api, seg, query } from "./api.js";
import { h, replace, table, logList, field, badge, time, micros } from "./dom.js";

const OUTCOMES = ["decided", "recorded", "out_of_fuel", "deadline", "memory_limit", "trap",
  "invalid_component", "plugin_error", "overloaded", "flow_unavailable"];

/** A datetime-local input's value as milliseconds since the epoch, or undefined. */
function ms(input) {
  return input.value ? new Date(input.value).getTime() : undefined;
}

export async function decisionsPage(el, search) {
  const initial = new URLSearchParams(search || "");
  const { items: flows } = await api("GET", "/v1/flows");
  const flow = h("select", {}, h("option", { value: "" }, "(all)"),
    flows.map((f) => h("option", { value: f.name, selected: f.name === initial.get("flow") }, f.name)));
  const outcome = h("select", {}, h("option", { value: "" }, "(all)"),
    OUTCOMES.map((o) => h("option", { value: o, selected: o === initial.get("outcome") }, o)));
  const callSid = h("input", { autocomplete: "off", value: initial.get("call_sid") || "" });
  const since = h("input", { type: "datetime-local" });
  const until = h("input", { type: "datetime-local" });
  const out = h("div", { id: "decisions" });
  const error = h("p", { class: "error", role: "alert" });
  const more = h("button", { type: "button", class: "secondary", id: "older", hidden: true }, "Older");
  let cursor;
  let rows = [];
  const load = async (reset) => {
    error.textContent = "";
    if (reset) {
      cursor = undefined;
      rows = [];
    }
    try {
      const page = await api("GET", `/v1/decisions${query({
        flow: flow.value, outcome: outcome.value, call_sid: callSid.value.trim(),
        since_ms: ms(since), until_ms: ms(until), cursor, limit: 50,
      })}`);
      rows = rows.concat(page.items);
      cursor = page.next_cursor;
      more.hidden = cursor === undefined;
      replace(out, rows.length ? records(rows) : h("p", { class: "muted" }, "No records match."));
    } catch (e) {
      error.textContent = e.message;
    }
  };
  more.addEventListener("click", () => load(false));
  const form = h("form", { class: "inline", id: "decision-filters" },
    field("filter-flow", "Flow", flow),
    field("filter-outcome", "Outcome", outcome),
    field("filter-call", "CallSid", callSid),
    field("filter-since", "From", since),
    field("filter-until", "Until", until),
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load(true);
  });
  replace(el, h("h1", {}, "Decisions"), form, error, out, more);
  await load(true);
}

function records(items) {
  return table(["At", "Flow", "Version", "CallSid", "Branch", "Outcome", "Fuel#", "Time#", "Details"],
    items.map((r) => [
      time(r.at_ms), h("a", { href: `#/flows/${seg(r.flow)}` }, r.flow), `v${r.version}`,
      r.call_sid ? h("a", { href: `#/calls/${seg(r.call_sid)}` }, r.call_sid) : "—",
      badge(r.branch), r.outcome, Number(r.fuel_used).toLocaleString(), micros(r.elapsed_us),
      details(r),
    ]), { id: "decisions-table" });
}

function details(r) {
  return h("details", {},
    h("summary", {}, r.error ? "Error and log" : `Log (${r.log.length})`),
    r.reason ? h("p", {}, "Reason: ", r.reason) : null,
    r.answer ? h("p", {}, "Answer: ", h("code", {}, r.answer)) : null,
    r.error ? h("p", { class: "error" }, r.error) : null,
    logList(r.log, r.log_dropped),
    r.outbound && r.outbound.length
      ? table(["Method", "Host", "Status", "ms#"], r.outbound.map((o) => [o.method, o.host, String(o.status ?? o.error ?? ""), String(o.ms ?? "")]))
      : null);
}

export async function callPage(el, callSid) {
  const { items } = await api("GET", `/v1/calls/${seg(callSid)}`);
  replace(el,
    h("h1", {}, `Call ${callSid}`),
    h("p", { class: "muted" }, `${items.length} records, newest first: every flow the call passed through.`),
    records(items));
}
