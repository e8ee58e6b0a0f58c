"""sticky-agent in Python: sends a repeat caller back to the agent they spoke to last.

The same plugin as the Rust ``plugins/sticky-agent``, decision for decision, reason for reason and
log line for log line. Before a Connect applet it looks the caller up in the key-value store and
answers ``success`` when an agent is remembered, ``failure`` otherwise. After a Connect applet whose
conversation completed (``DialCallStatus=completed`` with a ``DialWhomNumber``) it remembers
caller -> agent for 24 hours and answers ``success``.

The store is ``agents`` unless the flow's config value ``store`` names another; the flow must grant
it (``kv_stores``). A store error is logged as a warning and answered ``failure``.
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import host, kv
from wit_world.imports.host import Level
from wit_world.imports.types import Branch, CallDetails, Decision, DialCallStatus_Completed

DEFAULT_STORE = "agents"
# How long an agent is remembered after a completed conversation, in milliseconds.
REMEMBER_FOR_MS = 24 * 3600 * 1000

# What Rust's `str::trim` removes: Unicode's White_Space. Python's bare `strip()` also removes
# U+001C..U+001F, so the set is spelled out to trim exactly as the Rust plugin does.
WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)


def cannot(what: str, store: str, error: Err) -> Decision:
    """A failed read or write (``what``: ``read`` or ``write to``): logged, answered failure.

    ``error.value`` is one of the ``kv-error`` cases; each carries the host's message as ``value``.
    """
    reason = f'cannot {what} store "{store}": {error.value.value}'
    host.log(Level.WARN, reason)
    return Decision(Branch.FAILURE, reason)


def routed(caller: str, agent: str | None) -> Decision:
    """The answer to a look-up that found ``agent`` (or nothing)."""
    if agent is not None:
        return Decision(Branch.SUCCESS, f"caller {caller} last spoke to {agent}")
    return Decision(Branch.FAILURE, f"caller {caller} spoke to no agent in the last 24 hours")


class WitWorld(wit_world.WitWorld):
    """The component: componentize-py exports this class's ``decide``."""

    def decide(self, call: CallDetails) -> Decision:
        store = host.config("store")
        if store is None:
            store = DEFAULT_STORE

        caller = call.call_from if call.call_from is not None else call.from_
        caller = caller.strip(WHITESPACE) if caller is not None else ""
        if not caller:
            return Decision(Branch.FAILURE, "no caller number (neither CallFrom nor From)")

        agent = (call.dial_whom_number or "").strip(WHITESPACE)
        if agent and isinstance(call.dial_call_status, DialCallStatus_Completed):
            try:
                kv.set(store, caller, agent, REMEMBER_FOR_MS)
            except Err as error:
                return cannot("write to", store, error)
            return Decision(Branch.SUCCESS, f"remembered {agent} for caller {caller}")

        try:
            remembered = kv.get(store, caller)
        except Err as error:
            return cannot("read", store, error)
        return routed(caller, remembered)
