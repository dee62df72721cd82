"""The operations a session driver runs for geo Jobs (``run_type='geo'``, field ``geo_op``).

``run_geo_op(spark, namespace, op)`` answers a JSON-able dict (a render answers ``png`` bytes, which
the kernel hands to its supervisor, which stores them in S3 and puts their key in the answer). Tables
are session temp views, so every new kernel of a geo session loads them back from the scope's catalog
(read by the supervisor) with :func:`load_table` before it takes a Job. Nothing here touches the store.
"""

from __future__ import annotations

import contextlib
import io
import re
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from chalicelib import map_kinds
from chalicelib.engine.statements import exec_final_value, json_value

MAX_QUERY_ROWS = 50_000
MAX_OUTPUT_CHARS = 256_000
#: ``CREATE TABLE t AS select`` becomes a session view (no warehouse files; replayable from the catalog).
CTAS_RE = re.compile(
    r"^\s*create\s+(?:or\s+replace\s+)?table\s+(?:if\s+not\s+exists\s+)?`?([A-Za-z_][A-Za-z0-9_]*)`?"
    r"\s+(?:using\s+\w+\s+)?as\s+(.+?)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)


class _Tee(io.TextIOBase):
    """Collects what the command prints and still passes it on (to the job's log)."""

    def __init__(self, other: Any) -> None:
        self.other = other
        self.buffer_text = io.StringIO()

    def write(self, s: str) -> int:
        if self.buffer_text.tell() < MAX_OUTPUT_CHARS:
            self.buffer_text.write(s)
        with contextlib.suppress(Exception):
            self.other.write(s)
        return len(s)


def sql_frame(spark: SparkSession, sql: str) -> DataFrame:
    """``spark.sql(sql)`` after the result-preserving geo rewrites (``geo.rewrite``).

    If the rewritten text does not analyse, the original runs (and reports its own error).
    ``sql`` passes the SQL guard first (once: not again inside a ``sql_guard.guarded`` block).
    """
    from chalicelib.engine import sql_guard
    from chalicelib.engine.geo.rewrite import rewrite_sql

    sql_guard.guard(spark, sql, sql_guard.roots_from_env())
    rewritten = rewrite_sql(spark, sql)
    if rewritten != sql:
        try:
            return spark.sql(rewritten)
        except Exception:  # let the user's own SQL give the error message
            pass
    return spark.sql(sql)


def load_table(spark: SparkSession, table: dict[str, Any]) -> None:
    """One catalog definition into a temp view: a file (``kind='file'``) or SQL (``kind='sql'``)."""
    if table.get("kind") == "sql":
        sql_frame(spark, str(table["sql"])).createOrReplaceTempView(str(table["name"]))
        return
    from chalicelib.engine import sql_guard

    fmt, options = str(table.get("format") or "csv"), table.get("options") or {}
    paths = [str(p) for p in table["paths"]] if table.get("paths") else [str(table["path"])]
    for path in paths:
        if "://" not in path and any(ch in path for ch in "*?[]{}\\"):
            raise ValueError(f"refused: the path {path!r} is a pattern; load the files it names")
        sql_guard.check_file_source(fmt, path, options, sql_guard.roots_from_env())
    reader = spark.read.format(fmt)
    for key, value in options.items():
        reader = reader.option(str(key), str(value))
    if table.get("schema"):
        reader = reader.schema(str(table["schema"]))
    reader.load(paths if len(paths) > 1 else paths[0]).createOrReplaceTempView(str(table["name"]))


def table_info(spark: SparkSession, name: str) -> dict[str, Any]:
    """``{"schema": [{"col": "type"}], "num_rows": N}`` of a table or view."""
    df = spark.table(name)
    schema = [{f.name: f.dataType.simpleString()} for f in df.schema.fields]
    return {"schema": schema, "num_rows": int(df.count())}


def _inside(path: str, area: str) -> bool:
    import os

    real = os.path.realpath(path)
    return real != area and real.startswith(area.rstrip("/") + "/")


def savefile(spark: SparkSession, outputs: list[dict[str, Any]], area: str) -> dict[str, Any]:
    """Write each ``{sql | table, format, path, options, mode}`` with Spark's writer. The handler checked
    every path; here a local one is checked again against the caller's ``area`` (real paths), so a
    symlink swapped in between is refused rather than followed (the kernel's uid is the last fence)."""
    import os

    written = []
    for out in outputs:
        path = str(out["path"])
        if "://" not in path and (not _inside(path, area) or os.path.islink(path)):
            raise ValueError("refused: path must stay inside your own area")
        df = sql_frame(spark, str(out["sql"])) if out.get("sql") else spark.table(str(out["table"]))
        writer = df.write.format(str(out.get("format") or "csv")).mode(str(out.get("mode") or "error"))
        for key, value in (out.get("options") or {}).items():
            writer = writer.option(str(key), str(value))
        writer.save(path)
        written.append(path)
    return {"paths": written}


def _rows(df: DataFrame) -> list[Any]:
    rows = df.take(MAX_QUERY_ROWS)
    if len(df.columns) == 1:
        return [json_value(row[0]) for row in rows]
    return [[json_value(v) for v in row] for row in rows]


def query(spark: SparkSession, sql: str) -> dict[str, Any]:
    """Rows of ``sql`` (a single column gives a list of values); CTAS creates a view and reports it."""
    from chalicelib.engine import sql_guard

    with sql_guard.guarded(spark, sql):
        ctas = CTAS_RE.match(sql)
        if ctas:
            name, select = ctas.group(1), ctas.group(2)
            if select.startswith("(") and select.endswith(")"):
                select = select[1:-1]
            sql_frame(spark, select).createOrReplaceTempView(name)  # the select is guarded on its own too
            return {"result": [], "created_table": {"kind": "sql", "name": name, "sql": select}}
        df = sql_frame(spark, sql)
        return {"result": _rows(df) if df.columns else []}


def command(namespace: dict[str, Any], code: str) -> dict[str, Any]:
    """Exec ``code`` in ``namespace``: printed output and the repr of a final expression's value."""
    import sys

    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        value = exec_final_value(code, namespace, "<command>")
    output = tee.buffer_text.getvalue()
    shown = None if value is None else (value if isinstance(value, (bool, int, str)) else repr(value))
    if isinstance(value, float):
        shown = json_value(value)
    return {"output": output, "result": shown}


def map_source(spark: SparkSession, kind: str, sql: str) -> Any:
    """The renderer's input for ``sql``: a DataFrame, or ``render.XYPoints`` when a point
    map's SQL (``kind``, a route name, is ``map_kinds.MapKind.point_map``) starts with
    ``SELECT ST_Point(a, b)`` (same pixels, no WKB round trip), carrying the Parquet row
    groups to read directly when that query is a plain Parquet projection.
    ``sql`` passes the SQL guard once; ``xy_sql`` is rewritten from it."""
    from chalicelib.engine import sql_guard
    from chalicelib.engine.geo.parquet_scan import plain_parquet_scan
    from chalicelib.engine.geo.render.aggregate import XYPoints
    from chalicelib.engine.geo.rewrite import rewrite_sql, xy_map_sql

    with sql_guard.guarded(spark, sql):
        spec = map_kinds.by_route(kind)
        if spec is not None and spec.point_map:
            point_udfs: dict[str, tuple[str, str]] = {}
            xy_sql = xy_map_sql(rewrite_sql(spark, sql, point_udfs))
            if xy_sql is not None:
                try:
                    df = spark.sql(xy_sql)
                except Exception:  # e.g. GROUP BY the point: keep the general path
                    df = None
                if df is not None:
                    n = len(df.columns)
                    df = df.toDF(*[f"c{i}" for i in range(n)])
                    xy = df.select("c0", "c1", *[f"c{i}" for i in range(3, n)])
                    parallelism = spark.sparkContext.defaultParallelism
                    return XYPoints(xy, n - 2, plain_parquet_scan(xy, parallelism, point_udfs))
        return sql_frame(spark, sql)


def render(spark: SparkSession, kind: str, sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """A map PNG: ``render.RENDERERS[kind](spark.sql(sql), params)`` (see :func:`map_source`);
    ``kind`` is a ``map_kinds.MapKind.kind``, as ``chalicelib.geo.render`` queues it."""
    from chalicelib.engine.geo.render import RENDERERS

    draw = RENDERERS.get(kind)
    if draw is None:
        raise ValueError(f"map type {kind!r} is not available")
    png = draw(map_source(spark, kind, sql), params)
    return {"png": bytes(png)}


def run_geo_op(spark: SparkSession, namespace: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    """Run one geo operation (see the module docstring); exceptions are the user's error text."""
    kind = op.get("op")
    if kind in ("loadfile", "createtable"):
        for table in op.get("tables") or []:
            load_table(spark, table)
        return {"tables": [t["name"] for t in op.get("tables") or []]}
    if kind == "savefile":
        return savefile(spark, list(op.get("tables") or []), str(op["area"]))
    if kind == "table_info":
        return table_info(spark, str(op["table"]))
    if kind == "query":
        return query(spark, str(op["sql"]))
    if kind == "render":
        return render(spark, str(op["map"]), str(op["sql"]), dict(op.get("params") or {}))
    if kind == "command":
        return command(namespace, str(op["code"]))
    raise ValueError(f"unknown geo operation {kind!r}")
