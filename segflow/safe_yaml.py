"""YAML from config files, data contracts and --set values: PyYAML's safe loader, bounded.

A config or contract is small: a file larger than MAX_BYTES, nested deeper than MAX_DEPTH, or
whose anchors and aliases expand to more than MAX_NODES values (the "billion laughs") is refused
before it is built. Messages give the line and column of a problem but never quote the text: a
mistyped contract path may point at a file that holds secrets.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from segflow.errors import ConfigError

MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 50
MAX_NODES = 200_000


def load_yaml_file(path: Path, what: str) -> Any:
    """The YAML document of a regular UTF-8 file of at most MAX_BYTES; `what` names it in errors."""
    path = Path(path)
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):
            raise ConfigError(f"cannot read {what} {path}: it is not a regular file")
        if status.st_size > MAX_BYTES:
            raise ConfigError(f"{what} {path} is {status.st_size:,} bytes; the limit is {MAX_BYTES:,}")
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror or error}") from error
    except ValueError as error:  # a NUL byte in the path
        raise ConfigError(f"cannot read {what} {path!r}: {error}") from error
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{what} {path} is larger than the limit of {MAX_BYTES:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
            "save it as UTF-8"
        ) from error
    return load_yaml_text(text, f"{what} {path}")


def load_yaml_text(text: str, what: str) -> Any:
    """The YAML document of a string, with the safe loader and the bounds above."""
    try:
        _check_nesting(text)
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                return None
            _check_expansion(root)
            return loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} is not valid YAML: {_describe(error)}") from error


def _check_nesting(text: str) -> None:
    """Refuse collections nested deeper than MAX_DEPTH (the event parser does not recurse)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError(
                    problem=f"collections are nested deeper than {MAX_DEPTH} levels",
                    problem_mark=event.start_mark,
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand it beyond MAX_NODES values or MAX_DEPTH levels,
    or refer to themselves. Each distinct node is measured once, without recursion."""
    measured: dict[int, tuple[int, int]] = {}  # node -> (values when expanded, depth)
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if not children_done:
            if id(node) in measured:
                continue
            if id(node) in on_path:
                raise yaml.MarkedYAMLError(problem="an alias refers to itself", problem_mark=node.start_mark)
            on_path.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in measured)
            continue
        on_path.discard(id(node))
        size = 1 + sum(measured[id(child)][0] for child in children)
        depth = 1 + max((measured[id(child)][1] for child in children), default=0)
        if size > MAX_NODES or depth > MAX_DEPTH:
            raise yaml.MarkedYAMLError(
                problem=f"its anchors and aliases expand to more than {MAX_NODES:,} values "
                f"or {MAX_DEPTH} levels",
                problem_mark=node.start_mark,
            )
        measured[id(node)] = (size, depth)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _describe(error: yaml.YAMLError) -> str:
    """What is wrong and where, without the snippet of text PyYAML would quote."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return str(error).splitlines()[0]
    words = "; ".join(part for part in (error.context, error.problem) if part)
    mark = error.problem_mark or error.context_mark
    return f"{words} (line {mark.line + 1}, column {mark.column + 1})" if mark else words
