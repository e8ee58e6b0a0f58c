"""A test fixture: a Python plugin that fails the way a plugin author's first mistakes do, by the
flow's config value ``mode``:

- ``raise``: an uncaught exception (a ``KeyError`` for a menu entry that is not there);
- ``late-import``: an ``import`` inside ``decide``, which finds no module in the sandbox;
- anything else: decides ``success``.
"""

import wit_world
from wit_world.imports import host
from wit_world.imports.types import Branch, CallDetails, Decision

MENU = {"1": "sales", "2": "support"}


class WitWorld(wit_world.WitWorld):
    def decide(self, call: CallDetails) -> Decision:
        mode = host.config("mode")
        if mode == "raise":
            return Decision(Branch.SUCCESS, MENU[call.digits or "9"])
        if mode == "late-import":
            import json  # noqa: PLC0415 (the mistake this mode makes on purpose)

            return Decision(Branch.SUCCESS, json.dumps(call.digits))
        return Decision(Branch.SUCCESS, f"mode {mode!r}")
