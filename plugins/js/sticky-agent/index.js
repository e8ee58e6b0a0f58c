// sticky-agent in JavaScript: sends a repeat caller back to the agent they spoke to last.
//
// The same plugin as the Rust `plugins/sticky-agent`, decision for decision, reason for reason and
// log line for log line. Before a Connect applet it looks the caller up in the key-value store and
// answers `success` when an agent is remembered, `failure` otherwise. After a Connect applet whose
// conversation completed (`DialCallStatus=completed` with a `DialWhomNumber`) it remembers
// caller -> agent for 24 hours and answers `success`.
//
// The store is `agents` unless the flow's config value `store` names another; the flow must grant
// it (`kv_stores`). A store error is logged as a warning and answered `failure`.

import { config, log } from "passthru:plugin/host@0.1.4";
import { get, set } from "passthru:plugin/kv@0.1.4";

const DEFAULT_STORE = "agents";
// How long an agent is remembered after a completed conversation, in milliseconds (a WIT u64 is
// a BigInt in JavaScript).
const REMEMBER_FOR_MS = 24n * 3600n * 1000n;

// What Rust's `str::trim` removes: Unicode's White_Space. JavaScript's `trim()` also removes
// U+FEFF and keeps U+0085, so the set is spelled out to trim exactly as the Rust plugin does.
const SPACE = "[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const EDGES = new RegExp(`^${SPACE}+|${SPACE}+$`, "g");

function trim(text) {
  return text.replace(EDGES, "");
}

// A failed read or write (`what`: `read` or `write to`): logged, answered failure. A WIT
// `result` error arrives as a thrown error whose `payload` is the `kv-error` case,
// `{ tag: "no-such-store", val: MESSAGE }`; anything else thrown is not a store error.
function cannot(what, store, error) {
  const kvError = error?.payload;
  if (typeof kvError?.val !== "string") {
    throw error;
  }
  const reason = `cannot ${what} store "${store}": ${kvError.val}`;
  log("warn", reason);
  return { branch: "failure", reason };
}

// The answer to a look-up that found `agent` (or nothing).
function routed(caller, agent) {
  if (agent !== undefined && agent !== null) {
    return { branch: "success", reason: `caller ${caller} last spoke to ${agent}` };
  }
  return { branch: "failure", reason: `caller ${caller} spoke to no agent in the last 24 hours` };
}

export function decide(call) {
  const store = config("store") ?? DEFAULT_STORE;

  const caller = trim(call.callFrom ?? call.from ?? "");
  if (caller === "") {
    return { branch: "failure", reason: "no caller number (neither CallFrom nor From)" };
  }

  const agent = trim(call.dialWhomNumber ?? "");
  if (agent !== "" && call.dialCallStatus?.tag === "completed") {
    try {
      set(store, caller, agent, REMEMBER_FOR_MS);
    } catch (error) {
      return cannot("write to", store, error);
    }
    return { branch: "success", reason: `remembered ${agent} for caller ${caller}` };
  }

  let remembered;
  try {
    remembered = get(store, caller);
  } catch (error) {
    return cannot("read", store, error);
  }
  return routed(caller, remembered);
}
