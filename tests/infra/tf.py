"""A static reading of the Terraform export: declarations, references, dependencies.

No Terraform binary or provider is needed (none is available to CI). This reads
the ``*.tf.json`` files with the standard library and ``versions.tf`` with a
regular expression; it knows the subset of the language the export uses:
``${...}`` templates, ``depends_on`` lists, ``for_each``/``count`` meta-arguments.
What it cannot do is what a provider does: check attribute names and types
against the AWS provider's schema. That part is left to ``terraform validate``
where a Terraform with providers is available (see README, "Deploy").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Names that are not references to a declaration.
BUILTINS = {"path", "each", "count", "self", "terraform"}

_TOKEN = re.compile(
    r"(?<![\w.\]\"'])([a-z][a-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_-]*)(?:\.([A-Za-z_][A-Za-z0-9_-]*))?"
)


_FOR = re.compile(r"\bfor\s+([A-Za-z_]\w*)(?:\s*,\s*([A-Za-z_]\w*))?\s+in\b")


def interpolations(text: str) -> list[str]:
    """The contents of every top-level ``${...}`` in a template string."""
    found: list[str] = []
    i = 0
    while True:
        start = text.find("${", i)
        if start < 0:
            return found
        depth, j = 0, start + 1
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if depth != 0:
            raise ValueError(f"unbalanced interpolation in {text!r}")
        found.append(text[start + 2 : j])
        i = j + 1


@dataclass(frozen=True, order=True)
class Ref:
    kind: str  # "resource", "data", "var", "local", "builtin"
    type: str  # resource/data type; "" for var/local/builtin
    name: str

    @property
    def address(self) -> str:
        if self.kind == "resource":
            return f"{self.type}.{self.name}"
        if self.kind == "data":
            return f"data.{self.type}.{self.name}"
        if self.kind in ("var", "local"):
            return f"{self.kind}.{self.name}"
        return self.name


def _code_only(expression: str) -> str:
    """The expression with its string literals replaced by their own interpolations."""
    out: list[str] = []
    i = 0
    while i < len(expression):
        char = expression[i]
        if char != '"':
            out.append(char)
            i += 1
            continue
        j, depth = i + 1, 0
        while j < len(expression):
            if expression[j] == "\\":
                j += 2
                continue
            if expression.startswith("${", j):
                depth += 1
                j += 2
                continue
            if expression[j] == "}" and depth:
                depth -= 1
            elif expression[j] == '"' and not depth:
                break
            j += 1
        literal = expression[i + 1 : j]
        out.append(" " + " ".join(_code_only(inner) for inner in interpolations(literal)) + " ")
        i = j + 1
    return "".join(out)


def references(expression: str) -> set[Ref]:
    """The references in one interpolation's content (``aws_x.y.attr``, ``var.z``, ...)."""
    refs: set[Ref] = set()
    code = _code_only(expression)
    # The names a ``for`` expression binds (``[for a in xs : a.arn]``) are local to it.
    bound = {name for pair in _FOR.findall(code) for name in pair if name}
    for first, second, third in _TOKEN.findall(code):
        if first in bound:
            continue
        if first == "var":
            refs.add(Ref("var", "", second))
        elif first == "local":
            refs.add(Ref("local", "", second))
        elif first == "data":
            if third:
                refs.add(Ref("data", second, third))
        elif first in BUILTINS:
            refs.add(Ref("builtin", "", first))
        else:
            refs.add(Ref("resource", first, second))
    return refs


def strings(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every string in a JSON value, with its path (keys and list indexes)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, (*path, str(index)))


@dataclass
class Block:
    """One declaration: a resource, data source, variable, local or output."""

    address: str
    file: str
    body: Any

    def refs(self) -> set[Ref]:
        found: set[Ref] = set()
        for path, text in strings(self.body):
            if path and path[0] == "//":
                continue
            for content in interpolations(text):
                found |= references(content)
        if isinstance(self.body, dict):
            for entry in self.body.get("depends_on", []):
                found |= references(entry)
        return found


@dataclass
class Config:
    directory: Path
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    blocks: dict[str, Block] = field(default_factory=dict)
    outputs: dict[str, Block] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> Config:
        config = cls(directory)
        for path in sorted(directory.glob("*.tf.json")):
            doc = json.loads(path.read_text())
            config.documents[path.name] = doc
            config._declare(path.name, doc)
        return config

    def _add(self, address: str, file: str, body: Any) -> None:
        if address in self.blocks:
            raise ValueError(f"{address} declared twice ({self.blocks[address].file} and {file})")
        self.blocks[address] = Block(address, file, body)

    def _declare(self, file: str, doc: dict[str, Any]) -> None:
        for kind, content in doc.items():
            if kind == "//":
                continue
            if kind == "resource":
                for rtype, named in content.items():
                    for name, body in named.items():
                        self._add(f"{rtype}.{name}", file, body)
            elif kind == "data":
                for dtype, named in content.items():
                    for name, body in named.items():
                        self._add(f"data.{dtype}.{name}", file, body)
            elif kind == "variable":
                for name, body in content.items():
                    self._add(f"var.{name}", file, body)
            elif kind == "locals":
                for name, body in content.items():
                    if name != "//":
                        self._add(f"local.{name}", file, body)
            elif kind == "output":
                for name, body in content.items():
                    self.outputs[name] = Block(f"output.{name}", file, body)
            else:
                raise ValueError(f"{file}: unexpected top-level block {kind!r}")

    def resources(self, rtype: str) -> dict[str, Any]:
        prefix = f"{rtype}."
        return {a[len(prefix) :]: b.body for a, b in self.blocks.items() if a.startswith(prefix)}

    def data(self, dtype: str) -> dict[str, Any]:
        return self.resources(f"data.{dtype}")

    def all_blocks(self) -> Iterator[Block]:
        yield from self.blocks.values()
        yield from self.outputs.values()

    def dependencies(self) -> dict[str, set[str]]:
        """Declaration → the declarations it references (the graph Terraform would build)."""
        graph: dict[str, set[str]] = {}
        for block in self.blocks.values():
            # A variable's validation refers to the variable itself; that is no cycle.
            graph[block.address] = {r.address for r in block.refs() if r.kind != "builtin"} - {block.address}
        return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One dependency cycle, as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


_HCL_BLOCK = re.compile(r"^([a-z_]+)\b[^\n]*\{", re.MULTILINE)


def hcl_top_level_blocks(text: str) -> list[str]:
    """Top-level block types of a small HCL file (enough for versions.tf)."""
    without_comments = re.sub(r"(?m)^\s*#.*$", "", text)
    return _HCL_BLOCK.findall(without_comments)
