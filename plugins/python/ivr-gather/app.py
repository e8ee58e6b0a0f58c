"""ivr-gather in Python: what a Gather applet asks, from the flow's config.

The same plugin as the Rust ``plugins/ivr-gather``, plan for plan and reason for reason. The
prompt is the audio at ``prompt_url``, else the text ``prompt``, else a default text (an empty
value counts as unset). ``max_digits`` (default 1), ``timeout`` in seconds (default 5) and
``repeat`` (how many times the menu is repeated; left to Exotel when unset) are whole numbers as
Rust reads a ``u32``, trimmed; a value that is not one is the default. ``finish_key`` is the key
that ends the input (default ``#``); set empty, no key does. Built against the world
``gatherer``: it exports ``gather``, whose plan the host answers as Exotel's Gather JSON.
"""

import wit_world
from wit_world.imports import host
from wit_world.imports.types import CallDetails, GatherPlan, Media_AudioUrl, Media_Text

DEFAULT_PROMPT = "Please enter your choice, then press the hash key."
DEFAULT_MAX_DIGITS = 1
DEFAULT_FINISH_KEY = "#"
DEFAULT_TIMEOUT = 5

# What Rust's `str::trim` removes: Unicode's White_Space. Python's bare `strip()` also removes
# U+001C..U+001F, so the set is spelled out to trim exactly as the Rust plugin does.
WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)

U32_MAX = 2**32 - 1
ASCII_DIGITS = "0123456789"


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
    text = text.lstrip("0") or "0"
    if len(text) > 10:
        return None
    parsed = int(text)
    return parsed if parsed <= U32_MAX else None


def or_default(value: int | None, default: int) -> int:
    return default if value is None else value


def plan() -> GatherPlan:
    prompt_url = host.config("prompt_url")
    prompt = host.config("prompt")
    if prompt_url:
        media, kind = Media_AudioUrl(prompt_url), "audio"
    elif prompt:
        media, kind = Media_Text(prompt), "text"
    else:
        media, kind = Media_Text(DEFAULT_PROMPT), "default"
    max_digits = or_default(number(host.config("max_digits")), DEFAULT_MAX_DIGITS)
    finish_key = host.config("finish_key")
    if finish_key is None:
        finish_key = DEFAULT_FINISH_KEY
    elif finish_key == "":
        finish_key = None
    return GatherPlan(
        prompt=media,
        max_input_digits=max_digits,
        finish_on_key=finish_key,
        input_timeout=or_default(number(host.config("timeout")), DEFAULT_TIMEOUT),
        repeat_menu=number(host.config("repeat")),
        repeat_gather_prompt=None,
        reason=f"{kind} prompt, max_digits {max_digits}",
    )


class WitWorld(wit_world.WitWorld):
    """The component: componentize-py exports this class's ``gather``."""

    def gather(self, call: CallDetails) -> GatherPlan:
        return plan()
