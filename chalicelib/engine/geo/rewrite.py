"""SQL rewrites that keep results identical but avoid needless Python round trips.

Spark does not constant-fold Python UDF arguments and cannot fuse a scalar UDF with the
``mapInArrow`` pass that bins a map, so two common Arctern shapes are rewritten before
``spark.sql`` sees them:

* **point vs literal predicates**: ``ST_Within(ST_Point(a, b), ST_GeomFromText('<wkt>'))``
  (also ``ST_Contains(<literal>, ST_Point(a, b))`` and ``ST_Intersects`` either way round),
  with ``a`` and ``b`` plain column names, becomes::

      ((CASE WHEN typeof(a) IN (<numeric>) AND typeof(b) IN (<numeric>)
             THEN a >= minx AND a <= maxx AND b >= miny AND b <= maxy ELSE true END)
       AND sg_xy_within_<hash>(a, b))

  The UDF gets only the two coordinate columns (not the WKT on every row); its polygon is
  parsed and ``shapely.prepare``d once per Python worker.  The bounding-box test is
  plain Spark SQL: in a ``WHERE`` the optimizer pushes it below the Python evaluation
  (and into the Parquet scan), so only rows in the polygon's box reach Python.  It is
  exact under SQL three-valued logic: a point outside the (inclusive) box is never
  within/contained/intersecting, so ``false AND udf`` = ``false`` = the UDF's answer; a
  null coordinate gives ``null AND null`` = ``null``; NaN compares greater than every
  double, so it is outside the box, and the UDF says ``false`` for NaN as well.
  ``typeof`` is folded at planning time, so the box test only exists for numeric
  columns (strings/decimals are compared exactly as the UDF casts them: by the UDF).
  A literal that does not parse, or is empty, is left alone so the original query
  raises its usual error.
* **maps of ST_Point**: ``SELECT ST_Point(a, b) [AS p], w ... FROM ...`` is turned by
  :func:`xy_map_sql` into ``SELECT a AS __sg_x, b AS __sg_y, ST_Point(a, b) AS p, w ...``;
  the renderer bins the raw x/y columns (the unused ``ST_Point`` column is pruned by the
  optimizer), so the points are never written to WKB and read back.

Both rewrites only touch code outside string literals and comments.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import shapely
from pyspark.sql import SparkSession

__all__ = ["XY_COLUMNS", "rewrite_point_predicates", "rewrite_sql", "xy_map_sql"]

#: Names of the raw coordinate columns that :func:`xy_map_sql` puts first.
XY_COLUMNS = ("__sg_x", "__sg_y")

_NUMERIC_TYPES = "('double', 'float', 'int', 'bigint', 'smallint', 'tinyint')"
_TEXT_FUNCS = "ST_GeomFromText|ST_GeomFromWKT|ST_PolygonFromText|ST_PointFromText|ST_LineStringFromText"
_LITERAL_GEOM = re.compile(rf"^(?:{_TEXT_FUNCS})\s*\(\s*'([^'\\]*)'\s*\)$", re.IGNORECASE)
_POINT_CALL = re.compile(r"^ST_Point\s*\(", re.IGNORECASE)
_PREDICATE = re.compile(r"\b(ST_Within|ST_Contains|ST_Intersects)\s*\(", re.IGNORECASE)
_IDENT = r"(?:[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
_COLUMN = re.compile(rf"^{_IDENT}(?:\.{_IDENT})?$")
_KEYWORDS = frozenset(
    {
        *("select", "from", "where", "group", "by", "order", "having", "limit", "as", "and", "or", "not"),
        *("null", "true", "false", "case", "when", "then", "else", "end", "distinct", "all", "union"),
        *("intersect", "except", "minus", "join", "on", "using"),
    }
)
_SET_OPS = re.compile(r"\b(union|intersect|except|minus)\b", re.IGNORECASE)


def _code_mask(sql: str) -> list[bool]:
    """True for every character that is SQL code (not inside a string literal or comment)."""
    mask = [True] * len(sql)
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n and sql[j] != c:
                j += 2 if sql[j] == "\\" and c != "`" else 1
            end = min(j + 1, n)
            if c != "`":  # quoted identifiers are code, their content is not a string
                for k in range(i, end):
                    mask[k] = False
            i = end
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                mask[k] = False
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                mask[k] = False
            i = j
        else:
            i += 1
    return mask


def _call_args(sql: str, open_paren: int, mask: list[bool]) -> tuple[list[str], int] | None:
    """Split the arguments of the call whose ``(`` is at ``open_paren``; returns (args, index after ``)``)."""
    depth, start, args = 0, open_paren + 1, []
    for i in range(open_paren, len(sql)):
        if not mask[i]:
            continue
        c = sql[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i].strip())
                return args, i + 1
        elif c == "," and depth == 1:
            args.append(sql[start:i].strip())
            start = i + 1
    return None


def _point_columns(expr: str) -> tuple[str, str] | None:
    """``ST_Point(a, b)`` with plain column names -> ``(a, b)``."""
    m = _POINT_CALL.match(expr)
    if not m:
        return None
    parsed = _call_args(expr, m.end() - 1, _code_mask(expr))
    if parsed is None or parsed[1] != len(expr) or len(parsed[0]) != 2:
        return None
    a, b = parsed[0]
    if not all(_COLUMN.match(c) and c.lower() not in _KEYWORDS for c in (a, b)):
        return None
    return a, b


def _literal_geometry(expr: str) -> tuple[str, shapely.Geometry] | None:
    """``ST_GeomFromText('<wkt>')`` (or an alias) -> (wkt, parsed geometry); None if unusable."""
    m = _LITERAL_GEOM.match(expr)
    if not m:
        return None
    try:
        geom = shapely.from_wkt(m.group(1))
    except Exception:  # bad WKT: the original query reports it
        return None
    if geom is None or geom.is_empty:
        return None
    return m.group(1), geom


@dataclass(frozen=True)
class _PointPredicate:
    kind: str  # "contains" (point strictly inside) or "intersects"
    x: str
    y: str
    wkt: str
    bounds: tuple[float, float, float, float]


def _match_predicate(name: str, args: list[str]) -> _PointPredicate | None:
    if len(args) != 2:
        return None
    name = name.lower()
    orders = {"st_within": [(0, 1)], "st_contains": [(1, 0)], "st_intersects": [(0, 1), (1, 0)]}[name]
    for p, g in orders:
        cols = _point_columns(args[p])
        lit = _literal_geometry(args[g])
        if cols is None or lit is None:
            continue
        bounds = tuple(float(v) for v in shapely.bounds(lit[1]))
        if not all(v == v and abs(v) != float("inf") for v in bounds):
            return None
        kind = "intersects" if name == "st_intersects" else "contains"
        return _PointPredicate(kind, cols[0], cols[1], lit[0], (bounds[0], bounds[1], bounds[2], bounds[3]))
    return None


def _udf_name(kind: str, wkt: str) -> str:
    return f"sg_xy_{kind}_{hashlib.sha1(wkt.encode()).hexdigest()[:16]}"


def _predicate_sql(pred: _PointPredicate, name: str) -> str:
    x0, y0, x1, y1 = (f"{v!r}D" for v in pred.bounds)
    x, y = pred.x, pred.y
    box = (
        f"CASE WHEN typeof({x}) IN {_NUMERIC_TYPES} AND typeof({y}) IN {_NUMERIC_TYPES} "
        f"THEN {x} >= {x0} AND {x} <= {x1} AND {y} >= {y0} AND {y} <= {y1} ELSE true END"
    )
    return f"(({box}) AND {name}({x}, {y}))"


def rewrite_point_predicates(sql: str, register: Callable[[str, str, str], None]) -> str:
    """Rewrite point-vs-literal predicates (see the module docstring).

    ``register(name, kind, wkt)`` is called once per distinct literal to register the
    ``(x, y) -> boolean`` UDF under ``name`` before the rewritten SQL is used.
    """
    mask = _code_mask(sql)
    out: list[str] = []
    pos = 0
    registered: set[str] = set()
    for m in _PREDICATE.finditer(sql):
        if m.start() < pos or not mask[m.start()]:
            continue
        parsed = _call_args(sql, m.end() - 1, mask)
        if parsed is None:
            continue
        args, end = parsed
        pred = _match_predicate(m.group(1), args)
        if pred is None:
            continue
        name = _udf_name(pred.kind, pred.wkt)
        if name not in registered:
            register(name, pred.kind, pred.wkt)
            registered.add(name)
        out.append(sql[pos : m.start()])
        out.append(_predicate_sql(pred, name))
        pos = end
    out.append(sql[pos:])
    return "".join(out)


_SELECT_POINT = re.compile(r"^\s*select\s+(ST_Point\s*\()", re.IGNORECASE)
_ALIAS = re.compile(rf"^\s*(?:as\s+)?({_IDENT})", re.IGNORECASE)


def xy_map_sql(sql: str) -> str | None:
    """``SELECT ST_Point(a, b) [AS p], ... FROM ...`` -> the same query with the raw
    coordinates first (``__sg_x``, ``__sg_y``), then the original columns; None when the
    query does not have that shape (``DISTINCT`` and set operations are left alone)."""
    m = _SELECT_POINT.match(sql)
    if not m:
        return None
    mask = _code_mask(sql)
    parsed = _call_args(sql, m.end(1) - 1, mask)
    if parsed is None or len(parsed[0]) != 2 or not all(parsed[0]):
        return None
    (a, b), end = parsed
    rest = sql[end:]
    alias = _ALIAS.match(rest)
    if alias and alias.group(1).lower() not in _KEYWORDS:
        rest = rest[alias.end() :]
        name = alias.group(1)
    else:
        name = "__sg_point"
    code_rest = "".join(ch if ok else " " for ch, ok in zip(rest, mask[len(sql) - len(rest) :], strict=True))
    if _SET_OPS.search(code_rest) or not re.match(r"^\s*(,|from\b|$)", code_rest, re.IGNORECASE):
        return None
    point = sql[m.start(1) : end]
    return f"SELECT {a} AS {XY_COLUMNS[0]}, {b} AS {XY_COLUMNS[1]}, {point} AS {name}{rest}"


def rewrite_sql(spark: SparkSession, sql: str, registered: dict[str, tuple[str, str]] | None = None) -> str:
    """Apply :func:`rewrite_point_predicates`, registering the needed UDFs in ``spark``.

    ``registered``, when given, receives ``name -> (kind, wkt)`` of every UDF this call
    registered (the direct map read trusts exactly those names, see ``geo.predicates``)."""
    from chalicelib.engine.geo.functions import register_point_predicate

    def register(name: str, kind: str, wkt: str) -> None:
        register_point_predicate(spark, name, kind, wkt)
        if registered is not None:
            registered[name] = (kind, wkt)

    return rewrite_point_predicates(sql, register)
