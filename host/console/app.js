// The console's entry: sign-in, the section links and a hash router (#/flows, #/plugins, ...).
// Each page is a module exporting an async function that fills the view.

import { api, ApiError, role, signIn, signOut, token } from "./api.js";
import { h, replace, announce } from "./dom.js";
import { flowList, flowPage } from "./flows.js";
import { pluginsPage } from "./plugins.js";
import { benchPage } from "./bench.js";
import { decisionsPage, callPage } from "./decisions.js";
import { queuePage } from "./queue.js";
import { tenantsPage } from "./operator.js";

const TENANT_NAV = [
  ["#/flows", "Flows"],
  ["#/plugins", "Plugins"],
  ["#/bench", "Test bench"],
  ["#/decisions", "Decisions"],
];
const OPERATOR_NAV = [["#/tenants", "Tenants"]];

/** Route patterns and their pages; the first match wins. */
const ROUTES = [
  [/^#\/flows\/([^/]+)$/, flowPage],
  [/^#\/flows$/, flowList],
  [/^#\/plugins$/, pluginsPage],
  [/^#\/bench(?:\/([^/]+))?$/, benchPage],
  [/^#\/decisions(?:\?(.*))?$/, decisionsPage],
  [/^#\/calls\/([^/]+)$/, callPage],
  [/^#\/queue\/([^/]+)$/, queuePage],
  [/^#\/tenants$/, tenantsPage],
];

const view = () => document.getElementById("view");

/** Which token it is: the operator's answers GET /v1/tenants, a tenant's GET /v1/flows. */
async function whoIs(candidate) {
  try {
    await api("GET", "/v1/tenants", undefined, candidate);
    return "operator";
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) throw e;
  }
  await api("GET", "/v1/flows", undefined, candidate);
  return "tenant";
}

function showSignIn() {
  document.getElementById("sign-in").hidden = false;
  document.getElementById("nav").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("who").textContent = "";
  replace(view());
  document.getElementById("token").focus();
}

function showNav() {
  const links = role() === "operator" ? OPERATOR_NAV : TENANT_NAV;
  const nav = document.getElementById("nav");
  replace(nav, links.map(([href, text]) => h("a", { href }, text)));
  nav.hidden = false;
  document.getElementById("sign-in").hidden = true;
  document.getElementById("sign-out").hidden = false;
  document.getElementById("who").textContent = role() === "operator" ? "operator" : "tenant";
}

/** Renders the page the hash names; errors from the API are shown as their detail. */
async function route() {
  if (!token()) return showSignIn();
  showNav();
  let hash = location.hash;
  if (!hash.startsWith("#/")) {
    hash = role() === "operator" ? "#/tenants" : "#/flows";
    history.replaceState(null, "", hash);
  }
  for (const a of document.querySelectorAll("#nav a")) {
    if (hash.startsWith(a.getAttribute("href"))) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const found = ROUTES.find(([re]) => re.test(hash));
  const el = view();
  if (!found) {
    replace(el, h("h1", {}, "Not found"), h("p", {}, "No such page. ", h("a", { href: "#/flows" }, "Flows")));
    return;
  }
  const args = hash.match(found[0]).slice(1).map((x) => (x === undefined ? x : decodeURIComponent(x)));
  replace(el, h("p", { class: "muted" }, "Loading…"));
  try {
    await found[1](el, ...args);
    el.dataset.page = hash;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      signOut();
      showSignIn();
      document.getElementById("sign-in-error").textContent = `Signed out: ${e.message}`;
      return;
    }
    replace(el, h("h1", {}, "Something went wrong"), h("p", { class: "error", role: "alert" }, e.message));
  }
}

async function onSignIn(event) {
  event.preventDefault();
  const input = document.getElementById("token");
  const error = document.getElementById("sign-in-error");
  error.textContent = "";
  const candidate = input.value.trim();
  try {
    signIn(candidate, await whoIs(candidate));
    input.value = "";
    announce("Signed in.");
    const target = role() === "operator" ? "#/tenants" : "#/flows";
    if (location.hash === target) await route();
    else location.hash = target;
    document.getElementById("main").focus();
  } catch (e) {
    error.textContent = e.message;
  }
}

document.getElementById("sign-in-form").addEventListener("submit", onSignIn);
document.getElementById("sign-out").addEventListener("click", () => {
  signOut();
  history.replaceState(null, "", "#");
  showSignIn();
  announce("Signed out.");
});
// The skip link moves the focus without changing the hash, which names the page.
document.getElementById("skip").addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("main").focus();
});
window.addEventListener("hashchange", route);
route();
