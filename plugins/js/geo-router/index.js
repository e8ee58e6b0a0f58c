// geo-router in JavaScript: sends each call to a Switchcase case chosen by the caller's number
// prefix.
//
// The same plugin as the Rust `plugins/geo-router`, answer for answer, reason for reason and log
// line for log line. The flow's config maps prefixes to cases, `routes = "+9180:south, +91:india"`:
// the longest prefix of the caller's number wins, and a caller no prefix matches goes to the case
// named by `default_case` (or, without it, takes the failure branch with no case). The caller is
// Exotel's `CallFrom`, else the older `From`. Built against the world `switcher`: it exports
// `select`, whose answer is `200` with the body `{"select":"CASE"}`.

import { config, log } from "passthru:plugin/host@0.1.4";

const ROUTES_KEY = "routes";
const DEFAULT_KEY = "default_case";

// What Rust's `str::trim` removes: Unicode's White_Space. JavaScript's `trim()` also removes
// U+FEFF and keeps U+0085, so the set is spelled out to trim exactly as the Rust plugin does.
const SPACE = "[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const EDGES = new RegExp(`^${SPACE}+|${SPACE}+$`, "g");

function trim(text) {
  return text.replace(EDGES, "");
}

/**
 * The longest prefix in `routes` (`prefix:case` entries, comma-separated) that starts `caller`,
 * and its case, or `undefined`. Of equal prefixes the last wins, as with Rust's `max_by_key`.
 */
function route(routes, caller) {
  let best;
  for (const entry of routes.split(",")) {
    const colon = entry.indexOf(":");
    if (colon < 0) {
      continue;
    }
    const prefix = trim(entry.slice(0, colon));
    const kase = trim(entry.slice(colon + 1));
    if (prefix === "" || kase === "" || !caller.startsWith(prefix)) {
      continue;
    }
    if (best === undefined || prefix.length >= best.prefix.length) {
      best = { prefix, kase };
    }
  }
  return best;
}

/** The case for callers no prefix matches, or the failure branch without a case. */
function fallback(why) {
  const kase = config(DEFAULT_KEY);
  if (kase !== undefined && kase !== null) {
    return { branch: "success", case: kase, reason: `${why}: ${DEFAULT_KEY}` };
  }
  return { branch: "failure", case: undefined, reason: why };
}

export function select(call) {
  let caller = call.callFrom ?? call.from;
  if (caller === undefined || caller === null) {
    return fallback("no caller number (neither CallFrom nor From)");
  }
  caller = trim(caller);
  const found = route(config(ROUTES_KEY) ?? "", caller);
  if (found === undefined) {
    return fallback(`caller ${caller} matches no prefix`);
  }
  const reason = `caller ${caller} matches ${found.prefix}`;
  log("info", reason);
  return { branch: "success", case: found.kase, reason };
}
