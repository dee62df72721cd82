"""The WHERE of a map query as a small predicate tree, evaluated on Arrow batches.

The direct read (:mod:`chalicelib.engine.geo.parquet_scan`) may filter the rows it bins
itself instead of handing the query to Spark's row path, but only when it understands
the whole filter.  The filter is not parsed from the SQL text: it is taken from
Spark's *optimized* plan, so Spark has already resolved names, types, aliases,
subqueries (a folded scalar subquery is a literal there, anything else is a node we
refuse) and string escapes.  :func:`from_catalyst` translates that expression into
this tree (read in one call, :mod:`chalicelib.engine.plan_json`), node by node, and answers
``None`` for any node it does not know, so the
map takes the row path unchanged.  The tree has exactly five node kinds:

* :class:`Compare` ``column <op> literal`` (``>``, ``>=``, ``<``, ``<=``, ``=``, ``!=``),
  column and literal of the same Spark numeric type (no casts), literal not null/NaN;
* :class:`IsNull` ``column IS [NOT] NULL``;
* :class:`PointIn` ``ST_Within(ST_Point(x, y), <literal>)`` (or ``ST_Contains`` /
  ``ST_Intersects``): the UDF the geo rewrite registered for that literal
  (:mod:`chalicelib.engine.geo.rewrite`), only when *this* query's rewrite registered it;
* :class:`And`, :class:`Or`.

:func:`evaluate` answers, per row, whether the condition is TRUE: exactly the rows a
``WHERE`` keeps.  ``AND``/``OR`` of "is true" masks are exact under SQL's three-valued
logic (a conjunction is true iff every part is true, a disjunction iff one part is);
``NOT`` is not in the tree (except ``!=`` and ``IS NOT NULL``), because "not true" is not
"false".  Comparisons follow Spark, not IEEE: NaN is greater than every number and
equal to itself; null compares to nothing.  Point predicates run the very function the
UDF runs (:func:`chalicelib.engine.geo.functions.point_predicate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from chalicelib.engine.plan_json import expr_id, simple, type_name

__all__ = ["And", "Compare", "IsNull", "Or", "PointIn", "Predicate", "columns", "evaluate", "from_catalyst"]

Mask = npt.NDArray[np.bool_]

#: Spark numeric type names a comparison may use (column and literal both of it).
NUMERIC = frozenset({"double", "float", "long", "integer", "short", "byte"})
_FLOATING = frozenset({"double", "float"})
_OPS = {
    "GreaterThan": ">",
    "GreaterThanOrEqual": ">=",
    "LessThan": "<",
    "LessThanOrEqual": "<=",
    "EqualTo": "=",
}
_FLIP = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "=": "=", "!=": "!="}
_NUMPY_OPS = {"<": np.less, "<=": np.less_equal, "=": np.equal, "!=": np.not_equal}
_ARROW_OPS = {
    ">": pc.greater,
    ">=": pc.greater_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    "=": pc.equal,
    "!=": pc.not_equal,
}


@dataclass(frozen=True)
class Compare:
    """``column <op> value``; ``floating`` when the column is double/float (NaN rules)."""

    column: str
    op: str
    value: int | float
    floating: bool


@dataclass(frozen=True)
class IsNull:
    """``column IS NULL`` (``negated``: ``IS NOT NULL``)."""

    column: str
    negated: bool


@dataclass(frozen=True)
class PointIn:
    """``ST_Within(ST_Point(x, y), wkt)`` (kind ``contains``) or ``ST_Intersects`` (``intersects``)."""

    kind: str
    wkt: str
    x: str
    y: str


@dataclass(frozen=True)
class And:
    parts: tuple[Predicate, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Predicate, ...]


Predicate: TypeAlias = Compare | IsNull | PointIn | And | Or


def columns(pred: Predicate) -> list[str]:
    """The columns ``pred`` reads, each once, in first-use order."""
    out: dict[str, None] = {}

    def walk(p: Predicate) -> None:
        if isinstance(p, And | Or):
            for q in p.parts:
                walk(q)
        elif isinstance(p, PointIn):
            out.update({p.x: None, p.y: None})
        else:
            out[p.column] = None

    walk(pred)
    return list(out)


# ------------------------------------------------------------ from Spark's plan
Node = dict[str, Any]  # a Catalyst expression as :mod:`chalicelib.engine.plan_json` reads it


class _Refused(Exception):
    """A node outside the tree: the whole filter is refused."""


def from_catalyst(
    expr: Node,
    relation_columns: Mapping[int, tuple[str, str]],
    udf_results: Mapping[int, Node],
    point_udfs: Mapping[str, tuple[str, str]],
) -> Predicate | None:
    """Translate a Catalyst filter condition (its ``toJSON`` tree, :func:`plan_json.read`) into a
    :data:`Predicate`.

    ``relation_columns``: exprId -> (column name, Spark type name) of the scanned relation's
    attributes (any other attribute is refused: it is not a column of the file).
    ``udf_results``: exprId of an ``ArrowEvalPython`` result attribute -> the ``PythonUDF``
    it holds.  ``point_udfs``: UDF name -> (kind, wkt), the point predicates this query's
    rewrite registered.  None when any node is not understood.
    """
    try:
        return _convert(expr, relation_columns, udf_results, point_udfs)
    except _Refused:
        return None


def _column(expr: Node, relation_columns: Mapping[int, tuple[str, str]]) -> tuple[str, str]:
    if simple(expr) != "AttributeReference":
        raise _Refused
    found = relation_columns.get(expr_id(expr) or -1)
    if found is None:
        raise _Refused
    return found


def _literal(expr: Node) -> tuple[str, int | float]:
    """A numeric literal's type and value (``toJSON`` writes the value as Java's ``toString``)."""
    if simple(expr) != "Literal":
        raise _Refused
    typ, value = type_name(expr), expr.get("value")
    if typ not in NUMERIC or not isinstance(value, str):
        raise _Refused
    try:
        num: int | float = float(value) if typ in _FLOATING else int(value)
    except ValueError:
        raise _Refused from None
    if num != num:  # NaN literal: Spark's NaN = NaN semantics, not worth the cases
        raise _Refused
    return typ, num


def _compare(left: Node, right: Node, op: str, relation_columns: Mapping[int, tuple[str, str]]) -> Compare:
    if simple(left) == "Literal":
        left, right, op = right, left, _FLIP[op]
    name, ctype = _column(left, relation_columns)
    ltype, value = _literal(right)
    if ctype != ltype or ctype not in NUMERIC:
        raise _Refused
    return Compare(name, op, value, ctype in _FLOATING)


def _point(
    udf: Node, relation_columns: Mapping[int, tuple[str, str]], point_udfs: Mapping[str, tuple[str, str]]
) -> PointIn:
    if simple(udf) != "PythonUDF":
        raise _Refused
    known = point_udfs.get(str(udf.get("name")))
    children = udf["_children"]
    if known is None or len(children) != 2:
        raise _Refused
    (x, xt), (y, yt) = (_column(child, relation_columns) for child in children)
    if xt not in NUMERIC or yt not in NUMERIC:
        raise _Refused
    return PointIn(known[0], known[1], x, y)


def _convert(
    expr: Node,
    relation_columns: Mapping[int, tuple[str, str]],
    udf_results: Mapping[int, Node],
    point_udfs: Mapping[str, tuple[str, str]],
) -> Predicate:
    cls = simple(expr)
    kids: list[Node] = expr["_children"]
    if cls in ("And", "Or"):
        parts = tuple(_convert(k, relation_columns, udf_results, point_udfs) for k in kids)
        return And(parts) if cls == "And" else Or(parts)
    if cls in _OPS:
        return _compare(kids[0], kids[1], _OPS[cls], relation_columns)
    if cls == "Not" and simple(kids[0]) == "EqualTo":
        inner = kids[0]["_children"]
        return _compare(inner[0], inner[1], "!=", relation_columns)
    if cls in ("IsNull", "IsNotNull"):
        name, _ = _column(kids[0], relation_columns)
        return IsNull(name, cls == "IsNotNull")
    if cls == "PythonUDF":
        return _point(expr, relation_columns, point_udfs)
    if cls == "AttributeReference" and expr_id(expr) in udf_results:
        return _point(udf_results[expr_id(expr) or -1], relation_columns, point_udfs)
    raise _Refused


# ------------------------------------------------------------------ evaluation
def _cost(pred: Predicate) -> int:
    if isinstance(pred, PointIn):
        return 2
    if isinstance(pred, And | Or):
        return max(_cost(p) for p in pred.parts)
    return 0


@lru_cache(maxsize=64)
def _point_fn(kind: str, wkt: str) -> Any:
    from chalicelib.engine.geo.functions import point_predicate

    return point_predicate(kind, wkt)


def _true(arr: pa.Array | pa.ChunkedArray) -> Mask:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _compare_mask(pred: Compare, col: pa.Array) -> Mask:
    """``col <op> value`` is TRUE, Spark's way: null compares to nothing, NaN is above every number."""
    if col.null_count == 0:
        arr = col.to_numpy(zero_copy_only=True)
        value = arr.dtype.type(pred.value)  # same type as the column: Spark's literal was
        with np.errstate(invalid="ignore"):
            if pred.op == ">":  # not (x <= v): also true for NaN
                return np.asarray(~(arr <= value))
            if pred.op == ">=":
                return np.asarray(~(arr < value))
            return np.asarray(_NUMPY_OPS[pred.op](arr, value))
    out = _true(_ARROW_OPS[pred.op](col, pa.scalar(pred.value, type=col.type)))
    if pred.floating and pred.op in (">", ">="):
        out |= _true(pc.is_nan(col))  # NaN (not null) is above every number
    return out


def evaluate(pred: Predicate, batch: pa.RecordBatch) -> Mask:
    """Per row of ``batch`` (columns by name), whether ``pred`` is TRUE (what a WHERE keeps)."""
    n = batch.num_rows
    if isinstance(pred, Compare):
        return _compare_mask(pred, batch.column(pred.column))
    if isinstance(pred, IsNull):
        col = batch.column(pred.column)
        if col.null_count == 0:
            return np.full(n, pred.negated)
        valid = _true(pc.is_valid(col))
        return valid if pred.negated else ~valid
    if isinstance(pred, PointIn):
        return _true(_point_fn(pred.kind, pred.wkt)(batch.column(pred.x), batch.column(pred.y)))
    if isinstance(pred, Or):
        out = np.zeros(n, dtype=bool)
        for part in pred.parts:
            out |= evaluate(part, batch)
        return out
    keep = np.ones(n, dtype=bool)
    for part in sorted(pred.parts, key=_cost):  # cheap tests first, point tests on what is left
        if not keep.any():
            break
        if _cost(part) == 0 or keep.all():
            keep &= evaluate(part, batch)
        else:
            idx = np.flatnonzero(keep)
            sub = batch.select(columns(part)).take(pa.array(idx))
            keep[idx] = evaluate(part, sub)
    return keep
