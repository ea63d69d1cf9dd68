"""The one reader of YAML that users hand to mlnb: parameter files and ``-y`` text of
``mlnb run``, grid files and ``-g NAME=[...]`` lists of ``mlnb sweep``.

``yaml.safe_load`` runs no code, but it still lets a few hundred bytes cost minutes and
gigabytes: a "billion laughs" file nests aliases nine deep, loads in a millisecond as shared
objects, and expands to 387 million strings when the values are logged or handed to
papermill (measured: ``mlnb run -f bomb.yaml`` 120 s and 3.8 GB). So YAML is read here with
limits, each named in the refusal (:class:`~mlnb.errors.InputLimitError`):

- at most :data:`MAX_YAML_BYTES` of text;
- at most :data:`MAX_YAML_VALUES` values *once aliases are expanded* (an alias counts as
  every value it stands for, each time it is used), counted while the document is
  composed, so a bomb is refused after a few dozen nodes;
- at most :data:`MAX_YAML_DEPTH` levels of nesting (deeper, PyYAML's recursive composer
  raised a raw ``RecursionError``); an alias inside the value its anchor names (a value
  that contains itself) is refused too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from mlnb.errors import InputLimitError, InvalidInputError

__all__ = ["MAX_YAML_BYTES", "MAX_YAML_DEPTH", "MAX_YAML_VALUES", "load_yaml", "read_yaml_file"]

MAX_YAML_BYTES = 256 * 1024
MAX_YAML_VALUES = 100_000
MAX_YAML_DEPTH = 50


class _LimitedLoader(yaml.SafeLoader):
    """``SafeLoader`` that counts what it composes: every node once, every alias as the
    size of the value it names; deeper than the depth limit or over the value limit, it
    stops with :class:`InputLimitError`."""

    def __init__(self, text: str, source: str) -> None:
        super().__init__(text)
        self.source = source
        self.depth = 0
        self.values = 0
        self.sizes: dict[int, int] = {}  # id(node) -> its size with aliases expanded

    def _count(self, n: int) -> None:
        self.values += n
        if self.values > MAX_YAML_VALUES:
            raise InputLimitError(
                f"{self.source} expands to more than {MAX_YAML_VALUES:,} values (an alias "
                "counts as every value it stands for, each time it is used); mlnb reads "
                "no YAML larger than that: write the values out, or use fewer aliases"
            )

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            anchor = self.peek_event().anchor  # type: ignore[no-untyped-call]
            target = self.anchors.get(anchor)
            if target is not None:  # else PyYAML raises "found undefined alias"
                size = self.sizes.get(id(target))
                if size is None:  # its anchor's value is still being composed
                    raise InputLimitError(
                        f"{self.source}: the alias *{anchor} is inside the value &{anchor} "
                        "names, so that value contains itself and has no end; mlnb refuses it"
                    )
                self._count(size)
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > MAX_YAML_DEPTH:
            raise InputLimitError(
                f"{self.source} is nested more than {MAX_YAML_DEPTH} levels deep; mlnb "
                "reads no deeper YAML"
            )
        self._count(1)
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        if node is None:
            return None
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self.sizes[id(child)] for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(self.sizes[id(k)] + self.sizes[id(v)] for k, v in node.value)
        self.sizes[id(node)] = size
        return node


def load_yaml(text: str, *, source: str) -> Any:
    """The value of one YAML document (``safe_load`` types: no Python objects), read within
    the limits above. ``source`` names the input in messages (``"the grid file x.yml"``,
    ``"-y"``). Raises :class:`InputLimitError` over a limit, :class:`InvalidInputError`
    for YAML that does not parse."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_YAML_BYTES:
        raise InputLimitError(
            f"{source} is {size:,} bytes; mlnb reads YAML of at most "
            f"{MAX_YAML_BYTES // 1024} KiB ({MAX_YAML_BYTES:,} bytes)"
        )
    loader = _LimitedLoader(text, source)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{source} is not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def read_yaml_file(path: str | os.PathLike[str], *, what: str) -> Any:
    """:func:`load_yaml` of a UTF-8 file; ``what`` says what the file is for (``"grid
    file"``). A file over the size limit is refused without being read whole."""
    p = Path(path).expanduser()
    source = f"the {what} {p}"
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise InvalidInputError(f"cannot read the {what} {p}: {exc.strerror}") from None
    if len(raw) > MAX_YAML_BYTES:
        raise InputLimitError(
            f"{source} is larger than {MAX_YAML_BYTES // 1024} KiB ({MAX_YAML_BYTES:,} "
            "bytes), the most mlnb reads from a YAML file"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{source} is not UTF-8 text: {exc}") from None
    return load_yaml(text, source=source)
