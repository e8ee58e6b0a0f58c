"""ivr-menu in Python: success when the caller pressed exactly 1.

The same plugin as the Rust ``plugins/ivr-menu``, decision for decision and reason for reason. It
reads nothing but the call's ``digits`` (the host has already removed the double quotes Exotel
puts around them).
"""

import wit_world
from wit_world.imports.types import Branch, CallDetails, Decision


def branch_for(digits: str | None) -> tuple[Branch, str]:
    """The branch for the keys the caller pressed, and why."""
    if digits == "1":
        return Branch.SUCCESS, "caller pressed 1"
    if digits:
        return Branch.FAILURE, f"caller pressed {digits}"
    return Branch.FAILURE, "no digits"


class WitWorld(wit_world.WitWorld):
    """The component: componentize-py exports this class's ``decide``."""

    def decide(self, call: CallDetails) -> Decision:
        branch, reason = branch_for(call.digits)
        return Decision(branch, reason)
