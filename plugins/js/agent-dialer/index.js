// agent-dialer in JavaScript: tells a Connect applet whom to dial, from the flow's config.
//
// The same plugin as the Rust `plugins/agent-dialer`, plan for plan, reason for reason and log
// line for log line. `team = "+919800000001, +919800000002"` are the support team's numbers,
// dialled in order. A caller listed in `vip_numbers` rings up to `vip_parallel` of them at once
// (default 3, at most 5) and the agent who picks up hears the `vip_playback` text, if set.
// `caller_id` is the ExoPhone the agent sees, `record = "true"` records the call (both sides on
// their own channel), and `ring_seconds` bounds how long each number rings. The caller is
// Exotel's `CallFrom`, else the older `From`. Built against the world `connector`: it exports
// `connect`, whose plan the host answers as Exotel's Connect JSON.

import { config, log } from "passthru:plugin/host@0.1.4";

// What Rust's `str::trim` removes: Unicode's White_Space. JavaScript's `trim()` also removes
// U+FEFF and keeps U+0085, so the set is spelled out to trim exactly as the Rust plugin does.
const SPACE = "[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const EDGES = new RegExp(`^${SPACE}+|${SPACE}+$`, "g");

const U32_MAX = 4294967295;

function trim(text) {
  return text.replace(EDGES, "");
}

/** A config value, or `undefined` when the flow does not set it. */
function setting(key) {
  return config(key) ?? undefined;
}

/** The comma-separated entries of `value`, trimmed, without empty ones (the SDK's `list`). */
function entries(value) {
  return value.split(",").map(trim).filter((entry) => entry !== "");
}

/**
 * `value` trimmed, read as Rust reads a `u32`: an optional `+` and ASCII digits, at most
 * 2^32 - 1; anything else is `undefined`. (`Number` and `parseInt` take far more.)
 */
function number(value) {
  if (value === undefined) {
    return undefined;
  }
  const match = /^\+?0*([0-9]+)$/.exec(trim(value));
  if (match === null || match[1].length > 10) {
    return undefined;
  }
  const parsed = Number(match[1]);
  return parsed <= U32_MAX ? parsed : undefined;
}

/** The plan for a caller (`""` when there is none): the team in order, or several at once. */
function plan(caller) {
  const record = trim(setting("record") ?? "") === "true";
  const dial = {
    numbers: entries(setting("team") ?? ""),
    outgoingPhoneNumber: setting("caller_id"),
    recordCall: record,
    recordingChannels: record ? "dual" : undefined,
    maxRingingDuration: number(setting("ring_seconds")),
    maxConversationDuration: undefined,
    musicOnHold: undefined,
    parallelAttempts: undefined,
    startCallPlayback: undefined,
    fetchAfterAttempt: false,
    reason: undefined,
  };
  const vip = caller !== "" && entries(setting("vip_numbers") ?? "").includes(caller);
  if (!vip) {
    dial.reason =
      caller === "" ? "no caller number: the team in order" : `caller ${caller}: the team in order`;
    return dial;
  }
  const parallel = Math.min(Math.max(number(setting("vip_parallel")) ?? 3, 1), 5);
  dial.parallelAttempts = parallel;
  const playback = setting("vip_playback");
  if (playback !== undefined) {
    dial.startCallPlayback = { to: "callee", media: { tag: "text", val: playback } };
  }
  dial.reason = `caller ${caller} is a VIP: ${parallel} at once`;
  return dial;
}

export function connect(call) {
  const caller = call.callFrom ?? call.from;
  const dial = plan(caller === undefined || caller === null ? "" : trim(caller));
  log("info", dial.reason);
  return dial;
}
