// ivr-menu in JavaScript: success when the caller pressed exactly 1.
//
// The same plugin as the Rust `plugins/ivr-menu`, decision for decision and reason for reason. It
// reads nothing but the call's `digits` (the host has already removed the double quotes Exotel
// puts around them). componentize-js exports `decide` as the world's `decide`.

/** The branch for the keys the caller pressed, and why. */
function branchFor(digits) {
  if (digits === "1") {
    return ["success", "caller pressed 1"];
  }
  if (digits) {
    return ["failure", `caller pressed ${digits}`];
  }
  return ["failure", "no digits"];
}

export function decide(call) {
  const [branch, reason] = branchFor(call.digits);
  return { branch, reason };
}
