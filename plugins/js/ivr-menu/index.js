// ivr-menu in JavaScript: success when the caller pressed exactly 1.
//
// The same plugin as the Rust `plugins/ivr-menu`, decision for decision and reason for reason. It
// is a `lean-decider`: it reads nothing but the call's `digits`, through the `call` interface (the
// host has already removed the double quotes Exotel puts around them), so the host copies in that
// one field and not the whole call. componentize-js exports `decideLean` as the world's
// `decide-lean`.

import { digits } from "passthru:plugin/call@0.1.4";

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

export function decideLean() {
  const [branch, reason] = branchFor(digits());
  return { branch, reason };
}
