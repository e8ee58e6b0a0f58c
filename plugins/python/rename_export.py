"""Renames a top-level export of a WebAssembly component: rename_export.py IN OUT FROM TO.

componentize-py 0.25 cannot link a component whose world exports a function named like one of
libc's (`select`: the core export clashes with libc's own, and its linker panics with "duplicate
items"). So plugins/Makefile builds such a Python plugin against a copy of the WIT where the
export has another name, then renames the component's export back with this script. Only the
outer component's export section is rewritten; the core modules and their names are untouched,
and the host checks the result's types against the real world when it loads it.
"""

import sys


def leb(data: bytes, at: int) -> tuple[int, int]:
    """An unsigned LEB128 at `at`: its value and the offset after it."""
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def enc(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def skip_sortidx(data: bytes, at: int) -> int:
    sort = data[at]
    at += 2 if sort == 0x00 else 1  # a core sort has a second byte
    return leb(data, at)[1]


def skip_externdesc(data: bytes, at: int) -> int:
    kind = data[at]
    if kind == 0x00:  # core module: 0x11 typeidx
        return leb(data, at + 2)[1]
    if kind in (0x01, 0x04, 0x05):  # func, component, instance: typeidx
        return leb(data, at + 1)[1]
    if kind == 0x03:  # type bound: eq typeidx, or sub resource
        return leb(data, at + 2)[1] if data[at + 1] == 0x00 else at + 2
    raise ValueError(f"an export's type of kind {kind:#x} is not handled")


def rename(section: bytes, old: str, new: str) -> tuple[bytes, int]:
    """The export section with `old` renamed `new`, and how many exports were renamed."""
    count, at = leb(section, 0)
    out = bytearray(enc(count))
    renamed = 0
    for _ in range(count):
        tag = section[at]
        length, start = leb(section, at + 1)
        name = section[start : start + length].decode()
        end = start + length
        if tag == 0x01:  # a versioned name: a version suffix follows
            vlen, vstart = leb(section, end)
            end = vstart + vlen
        end = skip_sortidx(section, end)
        has_type = section[end]
        end = skip_externdesc(section, end + 1) if has_type == 0x01 else end + 1
        if name == old:
            name, renamed = new, renamed + 1
        encoded = name.encode()
        out += bytes([tag]) + enc(len(encoded)) + encoded + section[start + length : end]
        at = end
    return bytes(out), renamed


def main(src: str, dst: str, old: str, new: str) -> None:
    data = open(src, "rb").read()
    if data[:4] != b"\0asm" or data[6:8] != b"\x01\x00":
        sys.exit(f"{src} is not a component")
    out = bytearray(data[:8])
    at, renamed = 8, 0
    while at < len(data):
        section_id = data[at]
        size, start = leb(data, at + 1)
        body = data[start : start + size]
        if section_id == 11:  # the component's own exports (nested ones are inside section 4)
            body, n = rename(body, old, new)
            renamed += n
        out += bytes([section_id]) + enc(len(body)) + body
        at = start + size
    if renamed != 1:
        sys.exit(f"{src}: {renamed} exports named {old!r}, not one")
    open(dst, "wb").write(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
