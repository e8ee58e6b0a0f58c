"""vip-caller in Python: success when the caller is on the flow's VIP list.

The same plugin as the Rust ``plugins/vip-caller``, decision for decision, reason for reason and
log line for log line. The list is the flow's config value ``vip_numbers``, numbers separated by
commas; spaces around an entry and empty entries are ignored. The caller is Exotel's ``CallFrom``,
else the older ``From``. A flow without ``vip_numbers`` logs a warning and answers ``failure``.
It is a ``lean-decider``: it reads the caller through the ``call`` interface, and nothing else of
the call.
"""

import wit_world
from wit_world.imports import call, host
from wit_world.imports.host import Level
from wit_world.imports.types import Branch, Decision

VIP_NUMBERS_KEY = "vip_numbers"

# What Rust's `str::trim` removes: Unicode's White_Space. Python's bare `strip()` also removes
# U+001C..U+001F, so the set is spelled out to trim exactly as the Rust plugin does.
WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)


def vip_numbers(value: str) -> list[str]:
    """The entries of a comma-separated list, trimmed, without empty ones."""
    entries = (entry.strip(WHITESPACE) for entry in value.split(","))
    return [entry for entry in entries if entry]


class WitWorld(wit_world.WitWorld):
    """The component: componentize-py exports this class's ``decide_lean`` as ``decide-lean``."""

    def decide_lean(self) -> Decision:
        value = host.config(VIP_NUMBERS_KEY)
        if value is None:
            reason = f"{VIP_NUMBERS_KEY} is not configured"
            host.log(Level.WARN, f"{reason}: every caller takes the failure branch")
            return Decision(Branch.FAILURE, reason)

        caller = call.call_from()
        if caller is None:
            caller = call.from_()
        if caller is None:
            reason = "no caller number (neither CallFrom nor From)"
            host.log(Level.INFO, reason)
            return Decision(Branch.FAILURE, reason)
        caller = caller.strip(WHITESPACE)

        vips = vip_numbers(value)
        if caller in vips:
            branch, reason = Branch.SUCCESS, f"caller {caller} is a VIP"
        else:
            branch = Branch.FAILURE
            reason = f"caller {caller} is not among the {len(vips)} VIP numbers"
        host.log(Level.INFO, reason)
        return Decision(branch, reason)
