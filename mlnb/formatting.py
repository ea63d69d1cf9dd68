"""Text written into a format someone else's program reads: one escaping function per
format, used everywhere mlnb writes that format.

Run names, params, tags, experiment names, metric keys and messages come from users, from
notebooks and from imported bundles; written verbatim, they become markup. Each function
here turns any text into text that reads as itself in its format, and nothing more:

- :func:`escape_html` — HTML text and attribute values (reports, the compare view, magics).
- :func:`escape_markdown` — inline Markdown: a table cell, a heading, a list item (reports,
  ``$GITHUB_STEP_SUMMARY``, ``mlnb runs --format markdown``).
- :func:`escape_mathtext` — matplotlib text (titles, labels, legends), where ``$…$`` is math.
- :func:`yaml_quote` — a YAML scalar (a double-quoted string, on one line).

URLs use the standard library's own escaper (``urllib.parse.quote``, ``Path.as_uri``), and
shell words ``shlex.quote``. Standard library only, so every layer can import it.
"""

from __future__ import annotations

import html
import re
import unicodedata

__all__ = ["escape_html", "escape_markdown", "escape_mathtext", "yaml_quote"]

# Backslash-escaped wherever they are: CommonMark's inline syntax (\ code ` emphasis *
# links [ ]), GFM's tables | and strikethrough ~, GitHub's math $.
_MD_ESCAPED = frozenset("\\`*[]|~$")
_MD_UNDERSCORES = re.compile(r"_+")


def escape_html(text: str) -> str:
    """``text`` as HTML text or a quoted attribute value: ``& < > " '`` as entities."""
    return html.escape(text, quote=True)


def escape_markdown(text: str) -> str:
    """``text`` as inline Markdown that renders as exactly that text, safe in a GFM table
    cell: line breaks and other control characters become spaces (a newline ends a table
    row); ``&`` and ``<`` become entities (no raw HTML, no autolink, no entity of the
    text's own); ``\\ ` * [ ] | ~ $`` are backslash-escaped (no code, emphasis, link,
    image, cell border, strikethrough or math); ``_`` too, unless it sits inside a word
    (``learning_rate`` stays readable, as CommonMark never reads it as emphasis there).
    Block syntax at the start of a line (``#``, ``>``, ``-``) is left as it is: mlnb writes
    such text after its own ``| ``, ``## ``, ``- `` or ``> ``."""
    out = []
    for ch in text:
        if ch in _MD_ESCAPED:
            out.append("\\" + ch)
        elif ch == "&":
            out.append("&amp;")
        elif ch == "<":
            out.append("&lt;")
        elif unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            out.append(" ")
        else:
            out.append(ch)
    escaped = "".join(out)
    return _MD_UNDERSCORES.sub(lambda m: _underscores(m, escaped), escaped)


def _underscores(m: re.Match[str], text: str) -> str:
    before = text[m.start() - 1] if m.start() > 0 else " "
    after = text[m.end()] if m.end() < len(text) else " "
    if before.isalnum() and after.isalnum():
        return m.group()
    return m.group().replace("_", "\\_")


def escape_mathtext(text: str) -> str:
    """``text`` for a matplotlib title, label, legend or annotation: every ``$`` escaped,
    so nothing is parsed as mathtext (which also raised on a ``$`` that does not parse)
    and each ``\\$`` is drawn as ``$``."""
    return text.replace("$", "\\$")


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
