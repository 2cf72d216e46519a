"""CQL2 ``LIKE`` patterns as SQLite ``GLOB`` patterns.

CQL2's LIKE is case-sensitive, as GLOB is (SQLite's LIKE is not). In CQL2 ``%`` matches
any run of characters, ``_`` exactly one, and the escape character makes the next one
literal; every other character, ``.`` included, stands for itself. GLOB's own wildcards
(``*``, ``?``, ``[``) are bracketed so that they match literally.
"""

from __future__ import annotations

_GLOB_SPECIAL = "*?["


def like_to_glob(pattern: str, escape: str | None = "\\") -> str:
    """The GLOB pattern matching what the CQL2 LIKE ``pattern`` matches."""
    out: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if escape and ch == escape:
            literal = next(chars, "")
            out.append(f"[{literal}]" if literal and literal in _GLOB_SPECIAL else literal)
        elif ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        elif ch in _GLOB_SPECIAL:
            out.append(f"[{ch}]")
        else:
            out.append(ch)
    return "".join(out)
