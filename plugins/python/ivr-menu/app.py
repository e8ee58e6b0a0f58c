"""ivr-menu in Python: success when the caller pressed exactly 1.

The same plugin as the Rust ``plugins/ivr-menu``, decision for decision and reason for reason. It
is a ``lean-decider``: it reads nothing but the call's ``digits``, through the ``call`` interface
(the host has already removed the double quotes Exotel puts around them), so the host copies in
that one field and not the whole call.
"""

import wit_world
from wit_world.imports import call
from wit_world.imports.types import Branch, Decision


def branch_for(digits: str | None) -> tuple[Branch, str]:
    """The branch for the keys the caller pressed, and why."""
    if digits == "1":
        return Branch.SUCCESS, "caller pressed 1"
    if digits:
        return Branch.FAILURE, f"caller pressed {digits}"
    return Branch.FAILURE, "no digits"


class WitWorld(wit_world.WitWorld):
    """The component: componentize-py exports this class's ``decide_lean`` as ``decide-lean``."""

    def decide_lean(self) -> Decision:
        branch, reason = branch_for(call.digits())
        return Decision(branch, reason)
