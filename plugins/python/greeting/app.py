"""greeting in Python: the text a Greeting applet reads out, by the time of day in India.

The same plugin as the Rust ``plugins/greeting``, text for text and reason for reason. The hour
comes from Exotel's ``CurrentTime`` (India time), or ``StartTime`` when it is absent. The flow's
config may replace each text: ``morning`` (5:00 to 11:59), ``afternoon`` (12:00 to 16:59),
``evening`` (17:00 to 4:59), and ``unknown`` when the request carries neither time. Built against
the world ``greeter``: it exports ``greeting``, whose text is answered as ``text/plain``.
"""

import wit_world
from wit_world.imports import host
from wit_world.imports.types import CallDetails, TextReply

# India is UTC+05:30, all year.
IST_OFFSET_SECONDS = 5 * 3600 + 30 * 60

DEFAULT_TEXTS = {
    "morning": "Good morning, thank you for calling.",
    "afternoon": "Good afternoon, thank you for calling.",
    "evening": "Good evening, thank you for calling.",
}


def configured(key: str, default: str) -> str:
    """The flow's text for ``key``; an empty one is kept, as it is in Rust."""
    value = host.config(key)
    return default if value is None else value


def hour_in_india(unix_seconds: int) -> int:
    # Python's % has the sign of the divisor, like Rust's rem_euclid: times before 1970 work too.
    return (unix_seconds + IST_OFFSET_SECONDS) % 86_400 // 3600


def part_of_day(hour: int) -> str:
    if 5 <= hour <= 11:
        return "morning"
    if 12 <= hour <= 16:
        return "afternoon"
    return "evening"


class WitWorld(wit_world.WitWorld):
    """The component: componentize-py exports this class's ``greeting``."""

    def greeting(self, call: CallDetails) -> TextReply:
        # A CurrentTime Exotel sent in a shape we cannot read is not replaced by StartTime.
        time = call.current_time if call.current_time is not None else call.start_time
        if time is None or time.unix_seconds is None:
            text = configured("unknown", "Hello, thank you for calling.")
            return TextReply(text, "no CurrentTime or StartTime")
        part = part_of_day(hour_in_india(time.unix_seconds))
        return TextReply(configured(part, DEFAULT_TEXTS[part]), f"{part} in India")
