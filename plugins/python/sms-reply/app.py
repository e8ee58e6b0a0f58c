"""sms-reply in Python: the text an SMS applet sends back, from the flow's config.

The same plugin as the Rust ``plugins/sms-reply``, text for text and reason for reason.
``reply`` is the text, where ``{caller}`` becomes the caller's number (``CallFrom``, else
``From``, as sent) and ``{digits}`` the keys pressed; what the request lacks becomes nothing.
Without a ``reply`` (or with an empty one) the answer is a default text. The placeholders are
replaced in one pass, so a caller's number that reads ``{digits}`` is kept as it is. Built
against the world ``texter``: it exports ``sms``, whose text is answered as ``text/plain``.
"""

import wit_world
from wit_world.imports import host
from wit_world.imports.types import CallDetails, TextReply

DEFAULT_REPLY = "Thank you for your message. We will get back to you soon."
PLACEHOLDERS = ("{caller}", "{digits}")


def fill(template: str, caller: str, digits: str) -> tuple[str, int]:
    """``template`` with each placeholder replaced, in one pass; and how many were."""
    values = {"{caller}": caller, "{digits}": digits}
    out = []
    filled = 0
    at = 0
    while True:
        brace = template.find("{", at)
        if brace < 0:
            out.append(template[at:])
            return "".join(out), filled
        out.append(template[at:brace])
        name = next((p for p in PLACEHOLDERS if template.startswith(p, brace)), None)
        if name is None:
            out.append("{")
            at = brace + 1
        else:
            out.append(values[name])
            filled += 1
            at = brace + len(name)


class WitWorld(wit_world.WitWorld):
    """The component: componentize-py exports this class's ``sms``."""

    def sms(self, call: CallDetails) -> TextReply:
        template = host.config("reply")
        if not template:
            return TextReply(DEFAULT_REPLY, "no reply configured: the default text")
        caller = call.call_from if call.call_from is not None else call.from_
        text, filled = fill(template, caller or "", call.digits or "")
        return TextReply(text, f"the flow's reply (placeholders filled: {filled})")
