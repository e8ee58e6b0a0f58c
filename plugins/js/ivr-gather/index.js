// ivr-gather in JavaScript: what a Gather applet asks, from the flow's config.
//
// The same plugin as the Rust `plugins/ivr-gather`, plan for plan and reason for reason. The
// prompt is the audio at `prompt_url`, else the text `prompt`, else a default text (an empty
// value counts as unset). `max_digits` (default 1), `timeout` in seconds (default 5) and `repeat`
// (how many times the menu is repeated; left to Exotel when unset) are whole numbers as Rust
// reads a `u32`, trimmed; a value that is not one is the default. `finish_key` is the key that
// ends the input (default `#`); set empty, no key does. Built against the world `gatherer`: it
// exports `gather`, whose plan the host answers as Exotel's Gather JSON.

import { config } from "passthru:plugin/host@0.1.4";

const DEFAULT_PROMPT = "Please enter your choice, then press the hash key.";
const DEFAULT_MAX_DIGITS = 1;
const DEFAULT_FINISH_KEY = "#";
const DEFAULT_TIMEOUT = 5;

// What Rust's `str::trim` removes: Unicode's White_Space. JavaScript's `trim()` also removes
// U+FEFF and keeps U+0085, so the set is spelled out to trim exactly as the Rust plugin does.
const SPACE = "[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const EDGES = new RegExp(`^${SPACE}+|${SPACE}+$`, "g");

const U32_MAX = 4294967295;

/** A config value, or `undefined` when the flow does not set it. */
function setting(key) {
  return config(key) ?? undefined;
}

/**
 * `value` trimmed, read as Rust reads a `u32`: an optional `+` and ASCII digits, at most
 * 2^32 - 1; anything else is `undefined`. (`Number` and `parseInt` take far more.)
 */
function number(value) {
  if (value === undefined) {
    return undefined;
  }
  const match = /^\+?0*([0-9]+)$/.exec(value.replace(EDGES, ""));
  if (match === null || match[1].length > 10) {
    return undefined;
  }
  const parsed = Number(match[1]);
  return parsed <= U32_MAX ? parsed : undefined;
}

export function gather(_call) {
  const promptUrl = setting("prompt_url");
  const prompt = setting("prompt");
  let media;
  let kind;
  if (promptUrl) {
    media = { tag: "audio-url", val: promptUrl };
    kind = "audio";
  } else if (prompt) {
    media = { tag: "text", val: prompt };
    kind = "text";
  } else {
    media = { tag: "text", val: DEFAULT_PROMPT };
    kind = "default";
  }
  const maxDigits = number(setting("max_digits")) ?? DEFAULT_MAX_DIGITS;
  let finishKey = setting("finish_key");
  if (finishKey === undefined) {
    finishKey = DEFAULT_FINISH_KEY;
  } else if (finishKey === "") {
    finishKey = undefined;
  }
  return {
    prompt: media,
    maxInputDigits: maxDigits,
    finishOnKey: finishKey,
    inputTimeout: number(setting("timeout")) ?? DEFAULT_TIMEOUT,
    repeatMenu: number(setting("repeat")),
    repeatGatherPrompt: undefined,
    reason: `${kind} prompt, max_digits ${maxDigits}`,
  };
}
