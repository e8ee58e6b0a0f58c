"""business-hours in Python: success while the business is open, in its own time zone.

The call's time is Exotel's ``CurrentTime``, else ``StartTime``, else ``Created`` (India time,
which the host has already turned into Unix seconds). The flow's config sets the hours:

- ``open`` and ``close``: ``HH:MM``, 24-hour clock; by default ``09:00`` and ``18:00``. A
  ``close`` earlier than ``open`` is a shift that runs past midnight (``22:00`` to ``06:00``).
- ``days``: the days it opens, by their first three letters, separated by commas; by default
  ``mon,tue,wed,thu,fri``. A shift past midnight belongs to the day it starts on: with
  ``22:00``-``06:00`` and ``fri``, Saturday 05:00 is open and Monday 01:00 is not.
- ``timezone``: one of ``ZONES`` below; by default ``Asia/Kolkata``.

Time zones are loaded here, at module level, on purpose: componentize-py runs the module's top
level when it builds the component, with the time zone data at hand, and the loaded zones are part
of the component. A call runs in a sandbox with no files, where ``ZoneInfo(name)`` (like an
``import`` inside ``decide``) finds nothing.
"""

from datetime import datetime, time
from zoneinfo import ZoneInfo

import wit_world
from wit_world.imports import host
from wit_world.imports.host import Level
from wit_world.imports.types import Branch, CallDetails, Decision

# Every zone a flow may name, loaded while the component is built (add yours here).
ZONES = {
    name: ZoneInfo(name)
    for name in ("Asia/Kolkata", "Asia/Dubai", "Asia/Singapore", "Europe/London", "America/New_York")
}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ConfigError(ValueError):
    """A config value the plugin cannot use; the call takes the failure branch, saying why."""


def clock(key: str, default: str) -> time:
    value = host.config(key) or default
    try:
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise ConfigError(f"{key} is {value!r}, not HH:MM") from None


def open_days() -> set[int]:
    value = host.config("days") or "mon,tue,wed,thu,fri"
    days = set()
    for entry in value.split(","):
        entry = entry.strip().lower()
        if entry not in DAYS:
            raise ConfigError(f"days has {entry!r}, not one of {','.join(DAYS)}")
        days.add(DAYS.index(entry))
    return days


def zone() -> ZoneInfo:
    name = host.config("timezone") or "Asia/Kolkata"
    if name not in ZONES:
        raise ConfigError(f"timezone {name!r} is not one of {', '.join(ZONES)}")
    return ZONES[name]


def call_time(call: CallDetails) -> int | None:
    """The call's time in Unix seconds: CurrentTime, else StartTime, else Created."""
    for stamp in (call.current_time, call.start_time, call.created):
        if stamp is not None and stamp.unix_seconds is not None:
            return stamp.unix_seconds
    return None


def is_open(local: datetime, opens: time, closes: time, days: set[int]) -> bool:
    """Whether a shift that started on one of `days` covers the local time `local`."""
    now = local.time()
    if opens <= closes:
        return local.weekday() in days and opens <= now < closes
    # Past midnight: the evening part belongs to today, the early hours to yesterday's shift.
    if now >= opens:
        return local.weekday() in days
    return now < closes and (local.weekday() - 1) % 7 in days


class WitWorld(wit_world.WitWorld):
    """The component: componentize-py exports this class's ``decide``."""

    def decide(self, call: CallDetails) -> Decision:
        seconds = call_time(call)
        if seconds is None:
            return Decision(Branch.FAILURE, "no call time (CurrentTime, StartTime or Created)")
        try:
            opens, closes = clock("open", "09:00"), clock("close", "18:00")
            days, tz = open_days(), zone()
        except ConfigError as error:
            host.log(Level.WARN, str(error))
            return Decision(Branch.FAILURE, str(error))
        local = datetime.fromtimestamp(seconds, tz)
        stamp = local.strftime("%a %H:%M %Z")
        if is_open(local, opens, closes, days):
            return Decision(Branch.SUCCESS, f"open at {stamp}")
        return Decision(Branch.FAILURE, f"closed at {stamp}")
