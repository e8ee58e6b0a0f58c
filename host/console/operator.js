// The operator's view: tenants, their caps (edited in place), enabling and disabling, and
// their tokens (issued once, listed by id, revoked).

import { api, seg } from "./api.js";
import { h, replace, table, field, time, announce } from "./dom.js";

export async function tenantsPage(el) {
  const { items } = await api("GET", "/v1/tenants");
  const error = h("p", { class: "error", role: "alert" });
  const name = h("input", { required: true, pattern: "[A-Za-z0-9_-]+", autocomplete: "off" });
  const form = h("form", { class: "inline", id: "new-tenant" },
    field("new-tenant-name", "Name", name), h("button", { type: "submit" }, "Create tenant"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await api("POST", "/v1/tenants", { name: name.value });
      announce(`Tenant ${name.value} created.`);
      await tenantsPage(el);
    } catch (e) {
      error.textContent = e.message;
    }
  });
  replace(el,
    h("h1", {}, "Tenants"),
    table(["Tenant", "State", "Created", "Plugin bytes#", "Fuel#", "Deadline ms#", "Memory MiB#", "Flows#", "Versions#"],
      items.map((t) => [
        t.name, t.disabled ? "disabled" : "enabled", time(t.created_at_ms),
        t.caps.max_plugin_bytes.toLocaleString(), t.caps.max_fuel.toLocaleString(), String(t.caps.max_deadline_ms),
        String(t.caps.max_memory_mb), String(t.caps.max_flows), String(t.caps.max_versions),
      ]), { id: "tenants" }),
    h("h2", {}, "New tenant"), form, error,
    h("h2", {}, "Caps and tokens"),
    items.map((t) => tenantPanel(t, () => tenantsPage(el))));
}

function tenantPanel(t, redraw) {
  const error = h("p", { class: "error", role: "alert" });
  const issued = h("div", {});
  const tokens = h("div", {});
  const inputs = Object.entries(t.caps).map(([cap, value]) =>
    [cap, h("input", { type: "number", min: 0, value, "aria-describedby": null })]);
  const caps = h("form", { class: "inline" },
    inputs.map(([cap, input]) => field(`cap-${t.name}-${cap}`, cap, input)),
    h("button", { type: "submit" }, `Save caps of ${t.name}`));
  caps.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const change = Object.fromEntries(inputs.map(([cap, input]) => [cap, Number(input.value)]));
    try {
      await api("PATCH", `/v1/tenants/${seg(t.name)}`, { caps: change });
      announce(`Caps of ${t.name} saved.`);
      await redraw();
    } catch (e) {
      error.textContent = e.message;
    }
  });
  const drawTokens = async () => {
    const { items } = await api("GET", `/v1/tenants/${seg(t.name)}/tokens`);
    replace(tokens, items.length
      ? table(["Token id", "Created", "State", ""], items.map((k) => [
        h("code", {}, k.id), time(k.created_at_ms), k.revoked ? "revoked" : "live",
        k.revoked ? "" : h("button", {
          type: "button", class: "danger", "aria-label": `Revoke token ${k.id}`,
          onclick: async () => {
            try {
              await api("DELETE", `/v1/tenants/${seg(t.name)}/tokens/${seg(k.id)}`);
              await drawTokens();
            } catch (e) {
              error.textContent = e.message;
            }
          },
        }, "Revoke"),
      ]))
      : h("p", { class: "muted" }, "No tokens."));
  };
  const details = h("details", { class: "panel tenant", dataset: { tenant: t.name } },
    h("summary", {}, `${t.name}${t.disabled ? " (disabled)" : ""}`),
    caps,
    h("div", { class: "row" },
      h("button", {
        type: "button", class: t.disabled ? "" : "danger",
        onclick: async () => {
          try {
            await api("PATCH", `/v1/tenants/${seg(t.name)}`, { disabled: !t.disabled });
            await redraw();
          } catch (e) {
            error.textContent = e.message;
          }
        },
      }, t.disabled ? `Enable ${t.name}` : `Disable ${t.name}`),
      h("button", {
        type: "button", class: "secondary",
        onclick: async () => {
          try {
            const k = await api("POST", `/v1/tenants/${seg(t.name)}/tokens`);
            replace(issued, h("p", {}, "New token (shown once): ", h("span", { class: "token-shown" }, k.token)));
            await drawTokens();
          } catch (e) {
            error.textContent = e.message;
          }
        },
      }, `Issue a token for ${t.name}`)),
    issued, tokens, error);
  details.addEventListener("toggle", () => {
    if (details.open) drawTokens().catch((e) => { error.textContent = e.message; });
  });
  return details;
}
