"""Text written into a format someone else's program reads: one escaping function per
format, used everywhere mlnb writes that format.

Run names, params, tags, experiment names, metric keys and messages come from users, from
notebooks and from imported bundles; written verbatim, they become markup. Each function
here turns any text into text that reads as itself in its format, and nothing more:

- :func:`yaml_quote` — a YAML scalar (a double-quoted string, on one line).

Standard library only, so every layer can import it.
"""

from __future__ import annotations

__all__ = ["yaml_quote"]


def yaml_quote(text: str) -> str:
    """``text`` as a double-quoted YAML scalar that stays on its line: ``"`` and ``\\``
    escaped, and every character that is not printable (line breaks, including YAML 1.1's
    NEL, LS and PS, tabs and other controls) written as a ``\\u`` escape. ``: ``, `` #``,
    quotes, ``&``, ``*`` and ``!`` are plain characters inside the quotes."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)
