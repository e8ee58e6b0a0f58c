// vip-caller in JavaScript: success when the caller is on the flow's VIP list.
//
// The same plugin as the Rust `plugins/vip-caller`, decision for decision, reason for reason and
// log line for log line. The list is the flow's config value `vip_numbers`, numbers separated by
// commas; spaces around an entry and empty entries are ignored. The caller is Exotel's `CallFrom`,
// else the older `From`. A flow without `vip_numbers` logs a warning and answers `failure`. It is
// a `lean-decider`: it reads the caller through the `call` interface, and nothing else of the
// call. componentize-js exports `decideLean` as the world's `decide-lean`.

import { callFrom, from } from "passthru:plugin/call@0.1.4";
import { config, log } from "passthru:plugin/host@0.1.4";

const VIP_NUMBERS_KEY = "vip_numbers";

// What Rust's `str::trim` removes: Unicode's White_Space. JavaScript's `trim()` also removes
// U+FEFF and keeps U+0085, so the set is spelled out to trim exactly as the Rust plugin does.
const SPACE = "[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const EDGES = new RegExp(`^${SPACE}+|${SPACE}+$`, "g");

function trim(text) {
  return text.replace(EDGES, "");
}

/** The entries of a comma-separated list, trimmed, without empty ones. */
function vipNumbers(value) {
  return value
    .split(",")
    .map(trim)
    .filter((entry) => entry !== "");
}

export function decideLean() {
  const value = config(VIP_NUMBERS_KEY);
  if (value === undefined || value === null) {
    const reason = `${VIP_NUMBERS_KEY} is not configured`;
    log("warn", `${reason}: every caller takes the failure branch`);
    return { branch: "failure", reason };
  }

  let caller = callFrom() ?? from();
  if (caller === undefined || caller === null) {
    const reason = "no caller number (neither CallFrom nor From)";
    log("info", reason);
    return { branch: "failure", reason };
  }
  caller = trim(caller);

  const vips = vipNumbers(value);
  let branch, reason;
  if (vips.includes(caller)) {
    [branch, reason] = ["success", `caller ${caller} is a VIP`];
  } else {
    [branch, reason] = ["failure", `caller ${caller} is not among the ${vips.length} VIP numbers`];
  }
  log("info", reason);
  return { branch, reason };
}
