"""Spark plans and expressions as plain Python trees, read in one call (``TreeNode.toJSON``).

Walking a Catalyst tree through py4j costs one round trip to the JVM per node, per field: a map
query's plan took hundreds of them. ``toJSON`` answers the whole tree at once, nodes in pre-order,
each with its fields and ``num-children``; :func:`tree` links them. Expressions held in a node's fields
(a ``Filter``'s ``condition``, a ``Project``'s ``projectList``) are such arrays themselves.
"""

from __future__ import annotations

import json
from typing import Any


def tree(array: list[Any]) -> dict[str, Any]:
    """A ``TreeNode.toJSON`` array (nodes in pre-order, each with ``num-children``) as one tree: every
    node gets ``_children``. Iterative: a long ``OR`` chain must not hit Python's recursion limit."""
    root: dict[str, Any] | None = None
    open_nodes: list[list[Any]] = []  # [node, children still to come]
    for node in array:
        if not isinstance(node, dict) or "class" not in node:
            raise ValueError("not a tree node")
        node["_children"] = []
        if open_nodes:
            parent = open_nodes[-1]
            parent[0]["_children"].append(node)
            parent[1] -= 1
            if parent[1] == 0:
                open_nodes.pop()
        elif root is None:
            root = node
        else:
            raise ValueError("two roots")
        count = int(node.get("num-children") or 0)
        if count:
            open_nodes.append([node, count])
    if root is None or open_nodes:
        raise ValueError("incomplete tree")
    return root


def read(jtree: Any) -> dict[str, Any]:
    """The tree of a py4j Catalyst ``TreeNode`` (a plan or an expression), in one call."""
    return tree(json.loads(jtree.toJSON()))


def simple(node: dict[str, Any]) -> str:
    """A node's class without its package (``Filter``, ``AttributeReference``...)."""
    return str(node.get("class", "")).rsplit(".", 1)[-1]


def expr_id(node: dict[str, Any]) -> int | None:
    """An attribute's (or alias's) expression id, None when it has none."""
    found = node.get("exprId")
    return int(found["id"]) if isinstance(found, dict) and "id" in found else None


def type_name(node: dict[str, Any]) -> str:
    """A node's Spark type name as ``DataType.typeName`` gives it for simple types (``double``...);
    a complex type's JSON is not a name (answers its ``type`` field)."""
    data_type = node.get("dataType")
    if isinstance(data_type, str):
        return data_type
    if isinstance(data_type, dict):
        return str(data_type.get("type", ""))
    return ""
