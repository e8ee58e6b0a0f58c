// Plugins: upload a version (drag and drop, or the file input) and the versions kept, with their
// size, world, exports and, for uploads made from this tab, the compile time.

import { api, seg } from "./api.js";
import { h, replace, table, field, time, bytes, announce } from "./dom.js";

/**
 * Compile times, by SHA-256. The API reports a version's compile time only in the answer to its
 * upload (`compile_ms`), so the console remembers those it saw, in this tab only.
 */
const COMPILED = "passthru.compile_ms";

function compileTimes() {
  try {
    return JSON.parse(sessionStorage.getItem(COMPILED) || "{}");
  } catch {
    return {};
  }
}

function rememberCompileTime(sha256, ms) {
  const known = compileTimes();
  known[sha256] = ms;
  sessionStorage.setItem(COMPILED, JSON.stringify(known));
}

export async function pluginsPage(el) {
  const list = h("div", { id: "versions" });
  const result = h("div", { id: "upload-result", role: "status" });
  const error = h("p", { class: "error", role: "alert", id: "upload-error" });
  const name = h("input", { required: true, pattern: "[A-Za-z0-9_-]+", autocomplete: "off", placeholder: "ivr-menu" });
  const file = h("input", { type: "file", accept: ".wasm,application/wasm" });
  const upload = async (chosen) => {
    error.textContent = "";
    replace(result);
    if (!name.value) {
      error.textContent = "Name the plugin first.";
      name.focus();
      return;
    }
    if (!chosen) {
      error.textContent = "Choose a .wasm file.";
      return;
    }
    replace(result, h("p", { class: "muted" }, `Uploading and compiling ${chosen.name}…`));
    try {
      const v = await api("POST", `/v1/plugins/${seg(name.value)}/versions`, chosen);
      rememberCompileTime(v.sha256, v.compile_ms);
      replace(result, h("p", { class: "ok" },
        v.created ? `${v.plugin} v${v.version} uploaded: ${bytes(v.size)}, compiled in ${v.compile_ms} ms.`
          : `${v.plugin} v${v.version} has these exact bytes already.`));
      announce(`${v.plugin} v${v.version} uploaded.`);
      await drawVersions(list);
    } catch (e) {
      replace(result);
      error.textContent = e.message;
    } finally {
      file.value = "";
    }
  };
  file.addEventListener("change", () => upload(file.files[0]));
  const zone = h("div", { class: "dropzone", id: "dropzone" },
    h("p", {}, "Drop a component (.wasm) here, or choose it: "), field("upload-file", "File", file));
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    upload(event.dataTransfer.files[0]);
  });
  replace(el,
    h("h1", {}, "Plugins"),
    h("h2", {}, "Upload a version"),
    h("div", { class: "row" }, field("upload-plugin", "Plugin name", name)),
    zone, error, result,
    h("h2", {}, "Versions"),
    list);
  await drawVersions(list);
}

async function drawVersions(el) {
  const { items } = await api("GET", "/v1/plugins");
  const known = compileTimes();
  if (items.length === 0) {
    replace(el, h("p", { class: "muted" }, "No versions yet."));
    return;
  }
  const error = h("p", { class: "error", role: "alert" });
  replace(el,
    table(["Plugin", "Version", "Size#", "World", "Exports", "Compile time#", "Uploaded", ""],
      items.map((v) => [
        v.plugin, `v${v.version}`, bytes(v.size), h("code", {}, v.world), v.exports.join(", "),
        known[v.sha256] !== undefined ? `${known[v.sha256]} ms` : "—",
        time(v.uploaded_at_ms),
        h("button", {
          type: "button", class: "danger", "aria-label": `Delete ${v.plugin} v${v.version}`,
          onclick: async () => {
            error.textContent = "";
            try {
              await api("DELETE", `/v1/plugins/${seg(v.plugin)}/versions/${v.version}`);
              announce(`${v.plugin} v${v.version} deleted.`);
              await drawVersions(el);
            } catch (e) {
              error.textContent = e.message;
            }
          },
        }, "Delete"),
      ]), { id: "versions-table" }),
    h("p", { class: "muted" }, "Compile time: the API reports it only in an upload's answer, so it is shown for versions uploaded from this tab."),
    error);
}
