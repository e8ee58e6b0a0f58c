"""geo-router in Python: sends each call to a Switchcase case chosen by the caller's number prefix.

The same plugin as the Rust ``plugins/geo-router``, answer for answer, reason for reason and log
line for log line. The flow's config maps prefixes to cases, ``routes = "+9180:south, +91:india"``:
the longest prefix of the caller's number wins, and a caller no prefix matches goes to the case
named by ``default_case`` (or, without it, takes the failure branch with no case). The caller is
Exotel's ``CallFrom``, else the older ``From``. Built against the world ``switcher``: it exports
``select``, whose answer is ``200`` with the body ``{"select":"CASE"}``.
"""

import wit_world
from wit_world.imports import host
from wit_world.imports.host import Level
from wit_world.imports.types import Branch, CallDetails, Selection

ROUTES_KEY = "routes"
DEFAULT_KEY = "default_case"

# What Rust's `str::trim` removes: Unicode's White_Space. Python's bare `strip()` also removes
# U+001C..U+001F, so the set is spelled out to trim exactly as the Rust plugin does.
WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)


def route(routes: str, caller: str) -> tuple[str, str] | None:
    """The longest prefix in ``routes`` (``prefix:case`` entries, comma-separated) that starts
    ``caller``, and its case. Of equal prefixes the last wins, as with Rust's ``max_by_key``."""
    best = None
    for entry in routes.split(","):
        prefix, colon, case = entry.partition(":")
        prefix, case = prefix.strip(WHITESPACE), case.strip(WHITESPACE)
        if not colon or not prefix or not case or not caller.startswith(prefix):
            continue
        if best is None or len(prefix) >= len(best[0]):
            best = (prefix, case)
    return best


def fallback(why: str) -> Selection:
    """The case for callers no prefix matches, or the failure branch without a case."""
    case = host.config(DEFAULT_KEY)
    if case is not None:
        return Selection(Branch.SUCCESS, case, f"{why}: {DEFAULT_KEY}")
    return Selection(Branch.FAILURE, None, why)


class WitWorld(wit_world.WitWorld):
    """The component: componentize-py exports this class's ``select_case``, renamed ``select``
    by plugins/Makefile (componentize-py cannot link an export named ``select``)."""

    def select_case(self, call: CallDetails) -> Selection:
        caller = call.call_from if call.call_from is not None else call.from_
        if caller is None:
            return fallback("no caller number (neither CallFrom nor From)")
        caller = caller.strip(WHITESPACE)
        routes = host.config(ROUTES_KEY) or ""
        found = route(routes, caller)
        if found is None:
            return fallback(f"caller {caller} matches no prefix")
        prefix, case = found
        reason = f"caller {caller} matches {prefix}"
        host.log(Level.INFO, reason)
        return Selection(Branch.SUCCESS, case, reason)
