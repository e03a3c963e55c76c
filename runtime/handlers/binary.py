"""What a core Wasm binary declares, read without an engine: its sections, start function and memory."""

from __future__ import annotations

from collections.abc import Iterator

PAGE = 65536
SECTION_IMPORT = 2
SECTION_MEMORY = 5
SECTION_START = 8


def _leb(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def sections(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(id, start, end) of each section; raises IndexError on a truncated binary."""
    pos = 8
    while pos < len(data):
        section = data[pos]
        size, body = _leb(data, pos + 1)
        if body + size > len(data):
            raise IndexError("section runs past the end of the module")
        yield section, body, body + size
        pos = body + size


def has_start_section(data: bytes) -> bool:
    """Whether instantiating the module would run guest code (a start section). Malformed counts as yes."""
    try:
        return any(section == SECTION_START for section, _, _ in sections(data))
    except IndexError:
        return True


def initial_memory(data: bytes) -> int:
    """The bytes of linear memory the module's own first memory starts with (0 if none or malformed)."""
    try:
        for section, body, _end in sections(data):
            if section == SECTION_MEMORY:
                count, pos = _leb(data, body)
                if count == 0:
                    return 0
                flags, pos = _leb(data, pos)
                pages, pos = _leb(data, pos)
                return pages * (PAGE if not flags & 0x08 else 1)  # 0x08: custom page size of 1 byte
    except IndexError:
        return 0
    return 0
