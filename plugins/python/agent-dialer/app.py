"""agent-dialer in Python: tells a Connect applet whom to dial, from the flow's config.

The same plugin as the Rust ``plugins/agent-dialer``, plan for plan, reason for reason and log
line for log line. ``team = "+919800000001, +919800000002"`` are the support team's numbers,
dialled in order. A caller listed in ``vip_numbers`` rings up to ``vip_parallel`` of them at once
(default 3, at most 5) and the agent who picks up hears the ``vip_playback`` text, if set.
``caller_id`` is the ExoPhone the agent sees, ``record = "true"`` records the call (both sides on
their own channel), and ``ring_seconds`` bounds how long each number rings. The caller is
Exotel's ``CallFrom``, else the older ``From``. Built against the world ``connector``: it exports
``connect``, whose plan the host answers as Exotel's Connect JSON.
"""

import wit_world
from wit_world.imports import host
from wit_world.imports.host import Level
from wit_world.imports.types import (
    CallDetails,
    CallPlayback,
    ConnectPlan,
    Media_Text,
    PlaybackTo,
    RecordingChannels,
)

# What Rust's `str::trim` removes: Unicode's White_Space. Python's bare `strip()` also removes
# U+001C..U+001F, so the set is spelled out to trim exactly as the Rust plugin does.
WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)

U32_MAX = 2**32 - 1
ASCII_DIGITS = "0123456789"


def entries(value: str) -> list[str]:
    """The comma-separated entries of ``value``, trimmed, without empty ones (the SDK's list)."""
    trimmed = (entry.strip(WHITESPACE) for entry in value.split(","))
    return [entry for entry in trimmed if entry]


def number(value: str | None) -> int | None:
    """``value`` trimmed, read as Rust reads a ``u32``: an optional ``+`` and ASCII digits, at
    most 2^32 - 1; anything else is ``None``. (Python's ``int`` would also take ``_``, a ``-``
    and other scripts' digits.)"""
    if value is None:
        return None
    text = value.strip(WHITESPACE)
    if text.startswith("+"):
        text = text[1:]
    if not text or any(c not in ASCII_DIGITS for c in text):
        return None
    # Leading zeros are allowed, as in Rust; past ten digits it is too large anyway (and int()
    # refuses strings of thousands of digits).
    text = text.lstrip("0") or "0"
    if len(text) > 10:
        return None
    parsed = int(text)
    return parsed if parsed <= U32_MAX else None


def plan(caller: str) -> ConnectPlan:
    """The plan for a caller (``""`` when there is none): the team in order, or several at
    once for a VIP."""
    record = (host.config("record") or "").strip(WHITESPACE) == "true"
    dial = ConnectPlan(
        numbers=entries(host.config("team") or ""),
        outgoing_phone_number=host.config("caller_id"),
        record_call=record,
        recording_channels=RecordingChannels.DUAL if record else None,
        max_ringing_duration=number(host.config("ring_seconds")),
        max_conversation_duration=None,
        music_on_hold=None,
        parallel_attempts=None,
        start_call_playback=None,
        fetch_after_attempt=False,
        reason=None,
    )
    vip = caller != "" and caller in entries(host.config("vip_numbers") or "")
    if not vip:
        if caller == "":
            dial.reason = "no caller number: the team in order"
        else:
            dial.reason = f"caller {caller}: the team in order"
        return dial
    asked = number(host.config("vip_parallel"))
    parallel = min(max(3 if asked is None else asked, 1), 5)
    dial.parallel_attempts = parallel
    playback = host.config("vip_playback")
    if playback is not None:
        dial.start_call_playback = CallPlayback(PlaybackTo.CALLEE, Media_Text(playback))
    dial.reason = f"caller {caller} is a VIP: {parallel} at once"
    return dial


class WitWorld(wit_world.WitWorld):
    """The component: componentize-py exports this class's ``connect_call``, renamed ``connect``
    by plugins/Makefile (componentize-py cannot link an export named ``connect``)."""

    def connect_call(self, call: CallDetails) -> ConnectPlan:
        caller = call.call_from if call.call_from is not None else call.from_
        dial = plan("" if caller is None else caller.strip(WHITESPACE))
        host.log(Level.INFO, dial.reason)
        return dial
