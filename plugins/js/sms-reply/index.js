// sms-reply in JavaScript: the text an SMS applet sends back, from the flow's config.
//
// The same plugin as the Rust `plugins/sms-reply`, text for text and reason for reason. `reply`
// is the text, where `{caller}` becomes the caller's number (`CallFrom`, else `From`, as sent)
// and `{digits}` the keys pressed; what the request lacks becomes nothing. Without a `reply` (or
// with an empty one) the answer is a default text. The placeholders are replaced in one pass, so
// a caller's number that reads `{digits}` is kept as it is. Built against the world `texter`: it
// exports `sms`, whose text is answered as `text/plain`.

import { config } from "passthru:plugin/host@0.1.4";

const DEFAULT_REPLY = "Thank you for your message. We will get back to you soon.";

/** `template` with each `{caller}` and `{digits}` replaced, in one pass; and how many were. */
function fill(template, caller, digits) {
  const values = { "{caller}": caller, "{digits}": digits };
  let filled = 0;
  // A function as the replacement: a string one would read `$&` and the like in the values.
  const text = template.replace(/\{caller\}|\{digits\}/g, (name) => {
    filled += 1;
    return values[name];
  });
  return { text, filled };
}

export function sms(call) {
  const template = config("reply");
  if (template === undefined || template === null || template === "") {
    return { text: DEFAULT_REPLY, reason: "no reply configured: the default text" };
  }
  const caller = call.callFrom ?? call.from ?? "";
  const { text, filled } = fill(template, caller, call.digits ?? "");
  return { text, reason: `the flow's reply (placeholders filled: ${filled})` };
}
