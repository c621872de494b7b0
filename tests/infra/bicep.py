"""Reading the parsed Bicep (pycep's trees, as tests/infra/dump_bicep.py prints them).

pycep gives a parameter or variable reference and a string literal the same shape (a plain
string), so ``Scope.value`` resolves a string that names a parameter or variable of the file and
keeps any other string as a literal, with ``${name}`` interpolations filled in. It evaluates the
few expressions the infra's filters and settings use (``empty``, ``union``, ``a ? b : c``) and
raises on anything else, so a new construct fails a test instead of being misread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


class Unsupported(Exception):
    """An expression this reader does not evaluate."""


@dataclass
class Scope:
    """One Bicep file's parameters (with the values a deployment gives them) and variables."""

    tree: Mapping[str, Any]
    params: dict[str, Any] = field(default_factory=dict)

    def value(self, node: Any) -> Any:
        """The value of a tree node in this scope."""
        if isinstance(node, str):
            if node in self.params:
                return self.params[node]
            if node in self.tree.get("parameters", {}):
                default = self.tree["parameters"][node].get("default")
                if default is None:
                    raise Unsupported(f"parameter {node} has no value and no default")
                return self.value(default)
            if node in self.tree.get("variables", {}):
                return self.value(self.tree["variables"][node]["value"])
            return _INTERPOLATION.sub(lambda m: self._text(m.group(1)), node)
        if isinstance(node, list):
            return [self.value(item) for item in node]
        if isinstance(node, Mapping):
            if set(node) == {"operator"}:
                return self._operator(node["operator"])
            if set(node) == {"function"}:
                return self._function(node["function"])
            return {key: self.value(item) for key, item in node.items()}
        return node

    def _text(self, name: str) -> str:
        if not re.fullmatch(r"\w+", name):
            raise Unsupported(f"interpolation of an expression: ${{{name}}}")
        value = self.value(name)
        if not isinstance(value, str | int):
            raise Unsupported(f"interpolation of {name} = {value!r}")
        return str(value)

    def _operator(self, operator: Mapping[str, Any]) -> Any:
        if operator["type"] == "conditional":
            operands = operator["operands"]
            chosen = "true_value" if self.value(operands["condition"]) else "false_value"
            return self.value(operands[chosen])
        raise Unsupported(f"operator {operator['type']}")

    def _function(self, function: Mapping[str, Any]) -> Any:
        kind, parameters = function["type"], function["parameters"]
        if kind == "empty":
            return len(self.value(parameters["item_to_test"])) == 0
        if kind == "union":
            merged: dict[str, Any] = {}
            for argument in parameters.values():
                merged.update(self.value(argument))
            return merged
        raise Unsupported(f"function {kind}()")


def resource(tree: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A resource's body by its symbolic name, also for a conditional or looped resource."""
    config = tree["resources"][name]["config"]
    return config["config"] if "condition" in config or "loop_type" in config else config


def decorator(node: Mapping[str, Any], kind: str) -> Any:
    """The argument of a parameter's or output's decorator, or None."""
    for item in node.get("decorators", []):
        if item["type"] == kind:
            return item["argument"]
    return None


def accessor(node: Any) -> tuple[str, ...]:
    """``a.b.c`` as ``("a", "b", "c")``; a plain reference as a 1-tuple."""
    if isinstance(node, str):
        return (node,)
    if (
        isinstance(node, Mapping)
        and set(node) == {"operator"}
        and node["operator"]["type"] == "property_accessor"
    ):
        operands = node["operator"]["operands"]
        return accessor(operands["operand_1"]) + accessor(operands["operand_2"])
    raise Unsupported(f"not a property access: {node!r}")
