// An async flow's queue: its depth and age, and its dead letters (error and log of the last
// attempt) with replay and delete.

import { api, seg, query } from "./api.js";
import { h, replace, facts, logList, badge, time, announce } from "./dom.js";

export async function queuePage(el, flow) {
  const depth = h("div", { id: "queue-depth" });
  const letters = h("div", { id: "dead-letters" });
  const error = h("p", { class: "error", role: "alert" });
  const draw = async () => {
    const [q, dead] = await Promise.all([
      api("GET", `/v1/flows/${seg(flow)}/queue`),
      api("GET", `/v1/flows/${seg(flow)}/dead-letters${query({ limit: 100 })}`),
    ]);
    replace(depth, h("div", { class: "panel" }, facts([
      ["Ready", String(q.ready)],
      ["Retrying", String(q.retrying)],
      ["Running", String(q.in_flight)],
      ["Dead letters", String(q.dead)],
      ["Oldest waiting", q.oldest_accepted_at_ms ? `${time(q.oldest_accepted_at_ms)} (${Math.round(q.oldest_age_ms / 1000)} s ago)` : "—"],
    ])));
    replace(letters, dead.items.length === 0
      ? h("p", { class: "muted" }, "No dead letters.")
      : dead.items.map((d) => letter(flow, d, error, draw)));
  };
  replace(el,
    h("h1", {}, `Queue of ${flow}`),
    h("p", {}, h("a", { href: `#/flows/${seg(flow)}` }, `Back to flow ${flow}`), " · ",
      h("button", { type: "button", class: "secondary", onclick: () => draw().catch((e) => { error.textContent = e.message; }) }, "Refresh")),
    depth, h("h2", {}, "Dead letters"), error, letters);
  await draw();
}

function letter(flow, d, error, redraw) {
  const act = async (method, path, done) => {
    error.textContent = "";
    try {
      await api(method, `/v1/flows/${seg(flow)}/dead-letters/${d.id}${path}`);
      announce(done);
      await redraw();
    } catch (e) {
      error.textContent = e.message;
    }
  };
  const f = d.last_failure;
  return h("div", { class: "panel dead-letter", dataset: { id: d.id } },
    h("h3", {}, `Event ${d.id} `, badge(f.kind)),
    facts([
      ["CallSid", d.call_sid || "—"],
      ["Accepted", time(d.accepted_at_ms)],
      ["Attempts", String(d.attempts)],
      ["Last attempt", time(f.at_ms)],
      ["Error", h("span", { class: "error" }, f.error)],
      ["Query", h("code", {}, d.query)],
    ]),
    logList(f.log),
    h("div", { class: "row" },
      h("button", { type: "button", onclick: () => act("POST", "/replay", `Event ${d.id} queued again.`) }, `Replay event ${d.id}`),
      h("button", { type: "button", class: "danger", onclick: () => act("DELETE", "", `Event ${d.id} deleted.`) }, `Delete event ${d.id}`)),
  );
}
