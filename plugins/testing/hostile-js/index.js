// A test fixture: a JavaScript plugin that fails the way a plugin author's first mistakes do, by
// the flow's config value `mode`:
//
// - `throw`: an uncaught TypeError (a method called on a menu entry that is not there);
// - `reject`: an uncaught Error of the plugin's own;
// - anything else: decides `success`.
import { config } from "passthru:plugin/host@0.1.4";

const MENU = { 1: "sales", 2: "support" };

export function decide(call) {
  const mode = config("mode");
  if (mode === "throw") {
    return { branch: "success", reason: MENU[call.digits ?? "9"].toUpperCase() };
  }
  if (mode === "reject") {
    throw new Error(`no menu entry for ${JSON.stringify(call.digits ?? "")}`);
  }
  return { branch: "success", reason: `mode ${mode}` };
}
