// Flows: the list (and a form to bind a new one), and one flow's page: what is live, its plots
// per version, its failures with their latest log, canary and backtest, activate and rollback.

import { api, seg, query } from "./api.js";
import { h, replace, table, facts, logList, field, badge, time, announce } from "./dom.js";
import { linePlot } from "./plot.js";

const SUCCESSES = ["decided", "recorded"];

export async function flowList(el) {
  const [{ items: flows }, { items: versions }] = await Promise.all([
    api("GET", "/v1/flows"), api("GET", "/v1/plugins"),
  ]);
  const plugins = [...new Set(versions.map((v) => v.plugin))];
  const error = h("p", { class: "error", role: "alert" });
  const name = h("input", { required: true, pattern: "[A-Za-z0-9_-]+", autocomplete: "off" });
  const plugin = h("select", { required: true }, plugins.map((p) => h("option", { value: p }, p)));
  const version = h("input", { type: "number", min: 1, placeholder: "latest" });
  const mode = h("select", {}, h("option", { value: "sync" }, "sync"), h("option", { value: "async" }, "async"));
  const form = h("form", { class: "inline", id: "new-flow" },
    field("new-flow-name", "Name", name),
    field("new-flow-plugin", "Plugin", plugin),
    field("new-flow-version", "Version", version),
    field("new-flow-mode", "Mode", mode),
    h("button", { type: "submit" }, "Create flow"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const body = { plugin: plugin.value, mode: mode.value };
    if (version.value) body.version = Number(version.value);
    try {
      await api("PUT", `/v1/flows/${seg(name.value)}`, body);
      announce(`Flow ${name.value} saved.`);
      location.hash = `#/flows/${seg(name.value)}`;
    } catch (e) {
      error.textContent = e.message;
    }
  });
  replace(el,
    h("h1", {}, "Flows"),
    flows.length === 0
      ? h("p", { class: "muted" }, "No flows yet: upload a plugin, then bind it to a flow below.")
      : table(["Flow", "Plugin", "Live version", "Canary", "Mode", "Hook", "Updated"], flows.map((f) => [
        h("a", { href: `#/flows/${seg(f.name)}` }, f.name), f.plugin, `v${f.version}`,
        f.canary ? `v${f.canary.version} at ${f.canary.percent}%` : "—", f.mode, f.hook, time(f.updated_at_ms),
      ]), { id: "flows" }),
    h("h2", {}, "New flow"),
    plugins.length ? form : h("p", { class: "muted" }, "Upload a plugin first (Plugins)."),
    error);
}

export async function flowPage(el, name) {
  const flow = await api("GET", `/v1/flows/${seg(name)}`);
  const { items: versions } = await api("GET", `/v1/plugins/${seg(flow.plugin)}/versions`);
  const plots = h("div", { id: "plots" });
  const failures = h("div", { id: "failures" });
  const minutes = h("select", {},
    [15, 60, 180, 1440].map((m) => h("option", { value: m, selected: m === 60 }, m === 1440 ? "last day" : `last ${m} minutes`)));
  const refresh = async () => {
    await drawStats(plots, failures, flow, Number(minutes.value));
  };
  minutes.addEventListener("change", refresh);
  // Watching a canary: redraw on a timer while this page is shown.
  const auto = h("input", { type: "checkbox", id: "auto-refresh" });
  let timer;
  auto.addEventListener("change", () => {
    clearInterval(timer);
    if (!auto.checked) return;
    timer = setInterval(() => {
      if (!document.body.contains(plots)) clearInterval(timer);
      else refresh().catch((e) => announce(e.message));
    }, 15000);
  });
  replace(el,
    h("h1", {}, `Flow ${flow.name}`),
    h("p", {}, h("a", { href: `#/bench/${seg(flow.name)}` }, "Try it on the test bench"),
      flow.mode === "async" ? [" · ", h("a", { href: `#/queue/${seg(flow.name)}` }, "Queue and dead letters")] : null,
      " · ", h("a", { href: `#/decisions?flow=${seg(flow.name)}` }, "Decisions")),
    h("div", { class: "panel" }, liveFacts(flow)),
    h("h2", {}, "Calls"),
    h("div", { class: "row" }, field("stats-window", "Window", minutes),
      h("button", { type: "button", class: "secondary", id: "refresh", onclick: refresh }, "Refresh"),
      h("span", {}, auto, h("label", { for: "auto-refresh" }, " every 15 s"))),
    plots,
    h("h2", {}, "Failures"),
    failures,
    h("h2", {}, "Versions"),
    activation(flow, versions),
    h("h2", {}, "Canary"),
    canary(flow, versions),
    h("h2", {}, "Backtest: what would change"),
    backtest(flow, versions));
  await refresh();
}

function liveFacts(flow) {
  const l = flow.limits;
  return facts([
    ["Plugin", flow.plugin],
    ["Live version", h("span", { id: "live-version" }, `v${flow.version}`)],
    ["Previous version", flow.previous_version ? `v${flow.previous_version}` : "—"],
    ["Canary", h("span", { id: "canary-state" },
      flow.canary ? `v${flow.canary.version} takes ${flow.canary.percent}% of calls` : "none")],
    ["Mode", flow.mode],
    ["Hook", flow.hook],
    ["Limits", `fuel ${l.fuel.toLocaleString()}, deadline ${l.deadline_ms} ms, memory ${l.memory_mb} MiB`],
    ["Fallback", flow.fallback],
    ["Passthru URL", h("code", {}, `/passthru/${flow.tenant}/${flow.name}`)],
    ["URL auth", flow.auth.kind],
    ["Updated", time(flow.updated_at_ms)],
  ]);
}

/** What a version is to the flow, for plot labels. */
function versionLabel(flow, version) {
  if (version === flow.version) return `v${version} (live)`;
  if (flow.canary && version === flow.canary.version) return `v${version} (canary)`;
  return `v${version}`;
}

async function drawStats(plots, failures, flow, minutes) {
  const stats = await api("GET", `/v1/flows/${seg(flow.name)}/stats${query({ minutes })}`);
  const to = Math.floor(Date.now() / 60000) * 60000;
  const from = to - (minutes - 1) * 60000;
  const groups = new Map();
  for (const row of stats.minutes) {
    const key = `${row.version} ${row.outcome}`;
    if (!groups.has(key)) groups.set(key, { version: row.version, outcome: row.outcome, rows: [] });
    groups.get(key).rows.push(row);
  }
  const ordered = [...groups.values()].sort((a, b) => a.version - b.version || a.outcome.localeCompare(b.outcome));
  const isCanary = (v) => Boolean(flow.canary && flow.canary.version === v);
  const counts = ordered.map((g, group) => ({
    name: `${versionLabel(flow, g.version)} ${g.outcome}`, version: g.version, dashed: isCanary(g.version), group,
    points: g.rows.map((r) => [r.at_ms, r.count]),
  }));
  const latency = ordered.flatMap((g, group) => [["p50", "p50_us"], ["p99", "p99_us"]].map(([p, key]) => ({
    name: `${versionLabel(flow, g.version)} ${g.outcome} ${p}`, version: g.version, dashed: p === "p99", group,
    points: g.rows.map((r) => [r.at_ms, r[key] / 1000]),
  })));
  replace(plots, h("div", { class: "plots" },
    linePlot({ title: "Decisions per minute, by version and outcome (a canary's dashed)", series: counts, from, to,
      format: (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)) }),
    linePlot({ title: "Latency per minute (ms): p50, and p99 dashed", series: latency, from, to,
      format: (v) => (v >= 10 ? v.toFixed(0) : v.toFixed(2)), unit: " ms" })),
    stats.truncated ? h("p", { class: "muted" }, "Busy window: figures of the newest records only.") : null);
  await drawFailures(failures, flow, stats.minutes);
}

/** The failure kinds in the window, each with its count and its latest record's error and log. */
async function drawFailures(el, flow, rows) {
  const kinds = new Map();
  for (const r of rows) {
    if (!SUCCESSES.includes(r.outcome)) kinds.set(r.outcome, (kinds.get(r.outcome) || 0) + r.count);
  }
  if (kinds.size === 0) {
    replace(el, h("p", { class: "muted" }, "No failures in this window."));
    return;
  }
  // One after another: the server runs a tenant's reads of records one at a time anyway, and
  // refuses a tenant more than 8 waiting at once (there are 11 failure kinds).
  const latest = [];
  for (const outcome of kinds.keys()) {
    latest.push(await api("GET", `/v1/decisions${query({ flow: flow.name, outcome, limit: 1 })}`));
  }
  replace(el, [...kinds.entries()].map(([kind, count], i) => {
    const record = latest[i].items[0];
    return h("div", { class: "panel failure", dataset: { kind } },
      h("h3", {}, badge(kind), ` ${count} in the window`),
      record ? [
        h("p", {}, "Latest: ", time(record.at_ms), ", ", versionLabel(flow, record.version),
          record.call_sid ? [", call ", h("a", { href: `#/calls/${seg(record.call_sid)}` }, record.call_sid)] : null),
        record.error ? h("p", { class: "error" }, record.error) : null,
        logList(record.log, record.log_dropped),
      ] : h("p", { class: "muted" }, "Its records were pruned."));
  }));
}

function versionOptions(versions, selected) {
  return versions.map((v) => h("option", { value: v.version, selected: v.version === selected }, `v${v.version} (${v.world.split("/").pop()})`));
}

function activation(flow, versions) {
  const error = h("p", { class: "error", role: "alert" });
  const select = h("select", {}, versionOptions(versions, flow.version));
  const act = async (path, body, done) => {
    error.textContent = "";
    try {
      await api("POST", `/v1/flows/${seg(flow.name)}/${path}`, body);
      announce(done);
      window.dispatchEvent(new HashChangeEvent("hashchange"));
    } catch (e) {
      error.textContent = e.message;
    }
  };
  return h("div", {},
    h("div", { class: "row" },
      field("activate-version", "Version", select),
      h("button", { type: "button", id: "activate", onclick: () => act("activate", { version: Number(select.value) }, `v${select.value} is live.`) }, "Activate"),
      flow.previous_version
        ? h("button", { type: "button", class: "secondary", id: "rollback", onclick: () => act("rollback", undefined, `Rolled back to v${flow.previous_version}.`) },
          `Roll back to v${flow.previous_version}`)
        : null),
    error);
}

function canary(flow, versions) {
  const error = h("p", { class: "error", role: "alert" });
  const call = async (method, path, body, done) => {
    error.textContent = "";
    try {
      await api(method, `/v1/flows/${seg(flow.name)}/canary${path}`, body);
      announce(done);
      window.dispatchEvent(new HashChangeEvent("hashchange"));
    } catch (e) {
      error.textContent = e.message;
    }
  };
  if (flow.canary) {
    const v = flow.canary.version;
    return h("div", { class: "panel", id: "canary" },
      h("p", {}, `v${v} answers ${flow.canary.percent}% of calls (chosen by CallSid); v${flow.version} the rest. Their outcomes are side by side in the plots above.`),
      h("div", { class: "row" },
        h("button", { type: "button", id: "canary-promote", onclick: () => call("POST", "/promote", undefined, `v${v} is live.`) }, `Promote v${v}`),
        h("button", { type: "button", class: "danger", id: "canary-abort", onclick: () => call("DELETE", "", undefined, "Canary stopped.") }, "Stop the canary")),
      error);
  }
  const others = versions.filter((v) => v.version !== flow.version);
  const select = h("select", {}, versionOptions(others, others.length ? others[others.length - 1].version : null));
  const percent = h("input", { type: "number", min: 0.1, max: 99.9, step: 0.1, value: 10, required: true });
  const form = h("form", { class: "inline", id: "canary-form" },
    field("canary-version", "Version", select),
    field("canary-percent", "Percent of calls", percent),
    h("button", { type: "submit" }, "Start canary"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    call("PUT", "", { version: Number(select.value), percent: Number(percent.value) }, `Canary v${select.value} started.`);
  });
  return h("div", { class: "panel", id: "canary" },
    others.length ? form : h("p", { class: "muted" }, "Upload another version of this plugin to try it as a canary."),
    error);
}

function backtest(flow, versions) {
  const error = h("p", { class: "error", role: "alert" });
  const out = h("div", { id: "backtest-result" });
  const select = h("select", {}, versionOptions(versions, versions.length ? versions[versions.length - 1].version : null));
  const last = h("input", { type: "number", min: 1, max: 10000, value: 1000, required: true });
  const form = h("form", { class: "inline", id: "backtest-form" },
    field("backtest-version", "Version", select),
    field("backtest-last", "Last calls", last),
    h("button", { type: "submit" }, "Run backtest"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    replace(out, h("p", { class: "muted" }, "Replaying…"));
    try {
      const result = await api("POST", `/v1/flows/${seg(flow.name)}/backtest`, { version: Number(select.value), last: Number(last.value) });
      replace(out, backtestResult(flow, result));
    } catch (e) {
      replace(out);
      error.textContent = e.message;
    }
  });
  return h("div", { class: "panel" },
    h("p", { class: "muted" }, "Replays recorded calls through another version and lists the calls whose answer would change."),
    form, error, out);
}

function answerOf(side) {
  return [badge(side.branch), " ", side.outcome, side.answer ? ` · ${side.answer}` : "",
    side.reason ? ` · ${side.reason}` : "", side.error ? h("span", { class: "error" }, ` · ${side.error}`) : ""];
}

function backtestResult(flow, r) {
  const failures = Object.entries(r.failures || {});
  return h("div", {},
    facts([
      ["Calls replayed", String(r.calls)],
      ["Same answer", String(r.agree)],
      ["Different answer", h("span", { id: "backtest-differ" }, String(r.differ_total ?? r.differ.length))],
      ["Failures", failures.length ? failures.map(([k, n]) => `${k}: ${n}`).join(", ") : "none"],
      r.skipped ? ["Not replayable", `${r.skipped} (recorded before queries were kept, or async)`] : null,
      r.unfinished ? ["Not run", `${r.unfinished} (the backtest's time budget ran out)`] : null,
      ["Fuel", r.fuel ? `total ${r.fuel.total}, median ${r.fuel.median}, max ${r.fuel.max}` : "—"],
      ["Took", `${r.elapsed_ms} ms`],
    ].filter(Boolean)),
    r.differ.length
      ? table(["Call", "At", `Now (v${flow.version})`, `With v${r.version}`], r.differ.map((d) => [
        d.call_sid ? h("a", { href: `#/calls/${seg(d.call_sid)}` }, d.call_sid) : "—",
        time(d.at_ms), h("span", {}, answerOf(d.old)), h("span", {}, answerOf(d.new)),
      ]), { id: "backtest-table" })
      : h("p", { class: "ok" }, "No call would change."),
    r.version !== flow.version
      ? h("button", {
        type: "button", id: "backtest-activate",
        onclick: async (event) => {
          try {
            await api("POST", `/v1/flows/${seg(flow.name)}/activate`, { version: r.version });
            announce(`v${r.version} is live.`);
            window.dispatchEvent(new HashChangeEvent("hashchange"));
          } catch (e) {
            event.target.after(h("p", { class: "error", role: "alert" }, e.message));
          }
        },
      }, `Activate v${r.version}`)
      : null);
}
