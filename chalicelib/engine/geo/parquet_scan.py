"""Arrow-native reads for maps drawn straight from a Parquet table.

Binning a map in Python workers normally receives its rows through Spark's row path:
the vectorised Parquet reader's columns are turned into rows, and every row is
written into an Arrow batch again for the worker.  For ``SELECT ST_Point(x, y), w
FROM t`` where ``t`` is a plain Parquet scan (no filter, no expression, no join),
that round trip is pure overhead: the binning tasks can read the same row groups
with pyarrow themselves.  The work still runs as Spark tasks (one per slice of row
groups, spread over the executors) and only the pixel grids reach the driver.

:func:`plain_parquet_scan` recognises such a query from Spark's optimized plan and
returns the pieces to read, or ``None`` for anything else (filters, computed
columns, non-Parquet or table-format sources, columns whose Parquet type differs
from the Spark type, too many files), which then takes the general path.  Both
paths give the same pixels: tests compare the PNG bytes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import DataFrame

from chalicelib.engine import plan_json
from chalicelib.engine.geo import predicates
from chalicelib.engine.geo.predicates import Node, Predicate

__all__ = ["CONF_ENABLED", "ParquetPieces", "plain_parquet_scan", "read_slice"]

#: Spark conf that turns the direct read off (``false``) for a session.
CONF_ENABLED = "spark.sparkgate.geo.parquetDirect.enabled"
#: Beyond this many files the driver does not read every footer: general path.
MAX_FILES = 256
_PARQUET_FORMAT = "org.apache.spark.sql.execution.datasources.parquet.ParquetFileFormat"
_CSV_FORMAT = "org.apache.spark.sql.execution.datasources.csv.CSVFileFormat"
_FORMATS = frozenset({_PARQUET_FORMAT, _CSV_FORMAT})
# Spark type name -> the Parquet (Arrow) type that Spark reads into it unchanged.
_SAME_TYPE = {
    "double": pa.float64(),
    "float": pa.float32(),
    "long": pa.int64(),
    "integer": pa.int32(),
    "short": pa.int16(),
    "byte": pa.int8(),
}

Slice = tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True)
class ParquetPieces:
    """What the binning tasks read: ``columns`` (file column names, in the map's column
    order, repeats allowed) from each slice's files and row groups, one task per slice."""

    columns: tuple[str, ...]
    slices: tuple[Slice, ...]
    #: Rows the map keeps (the query's WHERE), evaluated on each batch; None keeps all.
    where: Predicate | None = None


def _name(obj: Any) -> str:
    return str(obj.getClass().getSimpleName())


@dataclass(frozen=True)
class _Scan:
    relation: Any  # the HadoopFsRelation
    names: list[str]  # file column of each map column
    spark_types: dict[str, str]  # relation column -> Spark type name
    where: Predicate | None  # the filter, None when there is none


def _scan(df: DataFrame, point_udfs: Mapping[str, tuple[str, str]]) -> _Scan | None:
    """The relation, projected columns and filter when ``df`` is, in Spark's optimized plan,
    ``Project(columns) <- [Filter | ArrowEvalPython | Project(columns)]* <- LogicalRelation``
    with every filter understood by :func:`predicates.from_catalyst`; None otherwise.

    The plan is read in one call (:func:`plan_json.read`); only the relation itself is then
    reached through py4j (``depth`` single-child steps down the same plan)."""
    jplan = df._jdf.queryExecution().optimizedPlan()
    try:
        plan = plan_json.read(jplan)
    except Exception:  # a plan Spark cannot write as JSON, or not a tree: the general path
        return None
    if plan_json.simple(plan) == "Project":
        exprs = [plan_json.tree(e) for e in plan.get("projectList") or []]
        node, depth = plan["_children"][0], 1
    else:
        exprs = [plan_json.tree(e) for e in plan.get("output") or []]
        node, depth = plan, 0
    conditions: list[Node] = []
    udf_results: dict[int, Node] = {}
    while True:
        kind = plan_json.simple(node)
        if kind == "Filter":
            conditions.append(plan_json.tree(node["condition"]))
        elif kind == "ArrowEvalPython":
            udfs = [plan_json.tree(u) for u in node.get("udfs") or []]
            results = [plan_json.tree(r) for r in node.get("resultAttrs") or []]
            if len(udfs) != len(results):
                return None
            for result, udf in zip(results, udfs, strict=True):
                result_id = plan_json.expr_id(result)
                if result_id is None:
                    return None
                udf_results[result_id] = udf
        elif kind == "Project":
            inner = [plan_json.tree(e) for e in node.get("projectList") or []]
            if any(plan_json.simple(e) != "AttributeReference" for e in inner):
                return None
        else:
            break
        if len(node["_children"]) != 1:
            return None
        node, depth = node["_children"][0], depth + 1
    if kind != "LogicalRelation":
        return None
    columns: dict[int, tuple[str, str]] = {}
    for attr in (plan_json.tree(a) for a in node.get("output") or []):
        attr_id = plan_json.expr_id(attr)
        if attr_id is None:
            return None
        columns[attr_id] = (str(attr.get("name")), plan_json.type_name(attr))
    names = []
    for expr in exprs:
        if plan_json.simple(expr) == "Alias":
            expr = expr["_children"][0]
        expr_id = plan_json.expr_id(expr)
        if plan_json.simple(expr) != "AttributeReference" or expr_id not in columns:
            return None
        names.append(columns[expr_id][0])
    where: Predicate | None = None
    if conditions:
        parts = [predicates.from_catalyst(c, columns, udf_results, point_udfs) for c in conditions]
        if any(p is None for p in parts):
            return None
        where = parts[0] if len(parts) == 1 else predicates.And(tuple(p for p in parts if p is not None))
    jnode = jplan
    for _ in range(depth):
        jnode = jnode.child()
    relation = jnode.relation()
    if _name(relation) != "HadoopFsRelation" or relation.fileFormat().getClass().getName() not in _FORMATS:
        return None
    return _Scan(relation, names, dict(columns.values()), where)


def _arrow_uri(uri: str) -> str:
    # Hadoop's S3 connectors name the scheme s3a/s3n; pyarrow knows it as s3.
    for scheme in ("s3a://", "s3n://"):
        if uri.startswith(scheme):
            return "s3://" + uri[len(scheme) :]
    return uri


def _open(uri: str) -> tuple[pafs.FileSystem, str]:
    fs, path = pafs.FileSystem.from_uri(_arrow_uri(uri))
    return fs, path


def plain_parquet_scan(
    df: DataFrame, parallelism: int, point_udfs: Mapping[str, tuple[str, str]] | None = None
) -> ParquetPieces | None:
    """The row groups to read for ``df`` when it is a column projection of a Parquet scan
    (or of a local CSV file's columnar copy, :mod:`csv_cache`), optionally filtered by a
    WHERE that :mod:`predicates` understands, whose columns Spark reads unchanged, split
    into at most ``parallelism`` slices of about equal row counts; None when the general
    path must be used.  ``point_udfs``: the point predicates the query's rewrite registered."""
    if df.sparkSession.conf.get(CONF_ENABLED, "true").lower() == "false":
        return None
    scan = _scan(df, point_udfs or {})
    if scan is None:
        return None
    relation, names = scan.relation, scan.names
    spark_types = {f.name: f.dataType.typeName() for f in df.schema.fields}
    wanted = [_SAME_TYPE.get(spark_types[c]) for c in df.columns]
    filter_columns = predicates.columns(scan.where) if scan.where is not None else []
    filter_types = [_SAME_TYPE.get(scan.spark_types[c]) for c in filter_columns]
    if any(t is None for t in [*wanted, *filter_types]):
        return None
    if relation.partitionSchema().size() > 0:
        return None  # partition values are not in the files
    files = _files(relation)
    if files is None or not files or len(files) > MAX_FILES:
        return None
    if relation.fileFormat().getClass().getName() == _CSV_FORMAT:
        from chalicelib.engine.geo.csv_cache import columnar_files

        files = columnar_files(df.sparkSession, relation, files)
        if files is None or len(files) > MAX_FILES:
            return None
    groups: list[tuple[int, str, int]] = []
    try:
        for status in files:
            footer = _footer(status)
            for name, typ in zip([*names, *filter_columns], [*wanted, *filter_types], strict=True):
                if footer.types.get(name) != typ:
                    return None
            groups.extend((rows, status[0], g) for g, rows in enumerate(footer.row_groups) if rows > 0)
    except (OSError, ValueError, pa.ArrowException):
        return None  # a file pyarrow cannot open or read here: let Spark do it
    if not groups:
        return None
    return ParquetPieces(tuple(names), _balance(groups, max(1, parallelism)), scan.where)


FileStatus = tuple[str, int, int]  # uri, length, modification time (ms)


def _files(relation: Any) -> list[FileStatus] | None:
    """The relation's files as Spark's file index lists them (no I/O: the index is cached)."""
    try:
        listed = relation.location().allFiles()
    except Exception:  # a file index without a file listing: general path
        return None
    return [
        (str(st.getPath().toString()), int(st.getLen()), int(st.getModificationTime()))
        for st in (listed.apply(i) for i in range(listed.size()))
    ]


@dataclass(frozen=True)
class _Footer:
    row_groups: tuple[int, ...]  # rows of each row group
    types: dict[str, pa.DataType]  # top-level column -> Arrow type


# Cached by (uri, length, mtime): repeated maps of a table (pan, zoom) read no footer again,
# and a rewritten file has a new length or mtime, so it is read afresh.
@lru_cache(maxsize=4096)
def _footer(status: FileStatus) -> _Footer:
    fs, path = _open(status[0])
    meta = pq.read_metadata(path, filesystem=fs)
    schema = meta.schema.to_arrow_schema()
    seen = Counter(schema.names)
    return _Footer(
        tuple(meta.row_group(g).num_rows for g in range(meta.num_row_groups)),
        {f.name: f.type for f in schema if seen[f.name] == 1},  # an ambiguous name is never read directly
    )


def _balance(groups: list[tuple[int, str, int]], parallelism: int) -> tuple[Slice, ...]:
    """Row groups into at most ``parallelism`` slices, largest first onto the lightest."""
    k = min(parallelism, len(groups))
    rows = [0] * k
    parts: list[dict[str, list[int]]] = [{} for _ in range(k)]
    for nrows, uri, g in sorted(groups, key=lambda t: -t[0]):
        i = rows.index(min(rows))
        rows[i] += nrows
        parts[i].setdefault(uri, []).append(g)
    return tuple(tuple((uri, tuple(sorted(gs))) for uri, gs in part.items()) for part in parts if part)


def read_slice(
    columns: Sequence[str], part: Slice, batch_rows: int, where: Predicate | None = None
) -> Iterator[pa.RecordBatch]:
    """Record batches of ``columns`` (in that order) from one slice's row groups, only the
    rows for which ``where`` is true."""
    needed = [*columns, *(predicates.columns(where) if where is not None else [])]
    unique = list(dict.fromkeys(needed))
    for uri, row_groups in part:
        fs, path = _open(uri)
        with fs.open_input_file(path) as handle:
            reader = pq.ParquetFile(handle)
            # one thread per task: the tasks already run side by side on the executors' cores
            batches = reader.iter_batches(
                batch_size=batch_rows, row_groups=list(row_groups), columns=unique, use_threads=False
            )
            for batch in batches:
                if where is not None:
                    batch = batch.filter(pa.array(predicates.evaluate(where, batch)))
                yield pa.RecordBatch.from_arrays([batch.column(c) for c in columns], names=list(columns))
