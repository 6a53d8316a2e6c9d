"""Safe YAML loading that remembers the line of every key and list item.

PyYAML's composer gives a node tree with positions; we build plain Python data from it
with the safe constructor and keep a map from data path (``("events", 2, "target")``)
to 1-based line (a scalar's own line; a mapping's or list's key line), so schema errors
can point at ``file:line``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

import yaml

from mwsim.errors import Problem, ProblemError

Path = tuple[str | int, ...]


@dataclass
class Source:
    """Parsed YAML data plus the line of each path in it (indexed on first use: only
    a problem needs a line)."""

    path: str
    data: Any
    node: yaml.Node | None = None
    _lines: dict[Path, int] | None = field(default=None, repr=False)

    @property
    def lines(self) -> dict[Path, int]:
        if self._lines is None:
            self._lines = {}
            if self.node is not None:
                _index(self.node, (), self._lines)
        return self._lines

    def line_of(self, loc: Sequence[Any]) -> int:
        """Line of the deepest prefix of ``loc`` that exists in the document.

        Items of ``loc`` that are not keys or indexes (pydantic adds union tags and
        model names) are skipped.
        """
        best: Path = ()
        current: Path = ()
        for item in loc:
            candidate = (*current, item)
            if candidate in self.lines:
                current = best = candidate
        return self.lines.get(best, 1)

    def problem(self, loc: Sequence[Any], message: str) -> Problem:
        return Problem(self.path, self.line_of(loc), message)


def _decode(raw: bytes, path: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ProblemError(
            [Problem(path, line, "not a text file: invalid UTF-8 (is it a binary file?)")]
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ProblemError([Problem(path, line, "not a text file: contains NUL bytes")])
    return text


def _index(
    node: yaml.Node, loc: Path, lines: dict[Path, int], inside: frozenset[int] = frozenset()
) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if id(node) in inside:
        return  # an alias of a node that contains it
    inside = inside | {id(node)}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            if (*loc, key) in lines:
                continue  # a duplicate key (reported by _duplicates)
            # a scalar is located at its own line, a mapping or list at its key's
            scalar = isinstance(value_node, yaml.ScalarNode)
            line = key_node.start_mark.line + 1
            lines[(*loc, key)] = value_node.start_mark.line + 1 if scalar else line
            _index(value_node, (*loc, key), lines, inside)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*loc, i), lines, inside)


def _duplicates(
    node: yaml.Node, path: str, problems: list[Problem], inside: frozenset[int] = frozenset()
) -> None:
    """A key given twice in one mapping (YAML would keep the last one silently)."""
    if id(node) in inside:
        return  # an alias of a node that contains it
    inside = inside | {id(node)}
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    Problem(path, line, f"duplicate key {key!r} (first at line {seen[key]})")
                )
                continue
            seen[key] = line
            _duplicates(value_node, path, problems, inside)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _duplicates(item, path, problems, inside)


_STR, _INT, _FLOAT = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
_REAL = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z")


class _Unusual(Exception):
    """A node the fast path leaves to PyYAML (a merge key, a recursive alias)."""


def _construct(node: yaml.Node, loader: Any) -> Any:
    """Python data of a document, as PyYAML's safe constructor makes it: strings, plain
    decimal numbers, mappings with string keys and lists directly (ten times faster on a
    scenario of thousands of events), anything else through PyYAML's constructor."""
    try:
        return _fast(node, loader, set())
    except _Unusual:
        return loader.construct_document(node)


def _fast(node: yaml.Node, loader: Any, path: set[int]) -> Any:
    tag = node.tag
    if isinstance(node, yaml.ScalarNode):
        if tag == _STR:
            return node.value
        if tag == _INT and _DECIMAL.match(node.value):
            return int(node.value)
        if tag == _FLOAT and _REAL.match(node.value):
            return float(node.value)
        return loader.construct_object(node, deep=True)
    if id(node) in path:
        raise _Unusual  # an alias inside itself
    path.add(id(node))
    try:
        if tag == _SEQ and isinstance(node, yaml.SequenceNode):
            return [_fast(item, loader, path) for item in node.value]
        if tag == _MAP and isinstance(node, yaml.MappingNode):
            out = {}
            for key, value in node.value:
                if key.tag != _STR or key.value == "<<":
                    raise _Unusual
                out[key.value] = _fast(value, loader, path)
            return out
        raise _Unusual
    finally:
        path.discard(id(node))


#: libyaml's parser where PyYAML was built with it (the same nodes and marks, ~10x faster).
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_source(raw: bytes | str, path: str) -> Source:
    """Parse one YAML document safely; raise ``ProblemError`` with located problems."""
    text = _decode(raw, path) if isinstance(raw, bytes) else raw
    if not text.strip() or all(
        not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()
    ):
        raise ProblemError([Problem(path, 1, "empty file: expected a scenario (a YAML mapping)")])
    loader = LOADER(text)
    problems: list[Problem] = []
    try:
        node = loader.get_single_node()
        if node is not None:  # before constructing: merge keys rewrite mappings in place
            _duplicates(node, path, problems)
        if problems:
            raise ProblemError(problems)
        data = _construct(node, loader) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = exc.problem or exc.context or "malformed YAML"
        raise ProblemError([Problem(path, line, f"not valid YAML: {what}")]) from None
    except yaml.reader.ReaderError as exc:  # control characters and the like
        line = text[: exc.position].count("\n") + 1
        raise ProblemError(
            [Problem(path, line, f"not valid YAML: unacceptable character {exc.character!r}")]
        ) from None
    finally:
        loader.dispose()
    return Source(path, data, node)


def is_scenario_file(path: FilePath) -> bool:
    """A YAML file whose top level has the ``mwsim:`` key (the format version): what a
    folder of scenarios is made of (other YAML files beside them are not scenarios)."""
    if path.suffix not in (".yaml", ".yml"):
        return False
    try:
        head = path.read_bytes()[:4096].decode("utf-8", errors="replace")
    except OSError:
        return False
    return any(line.startswith("mwsim:") for line in head.splitlines())
