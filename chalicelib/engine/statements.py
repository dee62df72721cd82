"""What a job's code does inside the driver: SQL statements and Python cells, turned into result sets."""

from __future__ import annotations

import ast
import base64
import datetime as dt
import itertools
import math
import os
import traceback
from collections.abc import Callable, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from chalicelib.engine import sql_guard
from chalicelib.engine.config import RESULT_PAGE_ROWS

_ENGINE_DIR = os.path.dirname(os.path.abspath(__file__))
#: ``{"metadata": [{columnName, dataType, comment}], "rows": [[...]] (page 0), "truncated": bool,
#: "total_rows": int, "page_rows": int, "pages": int}``; a TEXT set also ``"type": "1"`` (no metadata,
#: one line per row)
ResultSet = dict[str, Any]
#: Linkis's result set types: TEXT (printed output) and TABLE
TEXT_TYPE, TABLE_TYPE = "1", "2"


def split_sql(code: str) -> list[str]:
    """Statements of ``code`` separated by ``;`` (outside quotes, backticks and comments); blanks dropped."""
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    i, n = 0, len(code)
    while i < n:
        ch = code[i]
        if quote:
            current.append(ch)
            if ch == "\\" and quote != "`" and i + 1 < n:
                current.append(code[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch in ("'", '"', "`"):
            quote = ch
            current.append(ch)
        elif code.startswith("--", i):
            end = code.find("\n", i)
            i = n if end < 0 else end
            continue
        elif code.startswith("/*", i):
            end = code.find("*/", i + 2)
            i = n if end < 0 else end + 2
            current.append(" ")
            continue
        elif ch == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def json_value(value: Any) -> Any:
    """A Spark row value as JSON: dates ISO, decimals as strings, binary base64, NaN/inf as strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if hasattr(value, "asDict"):
        return {k: json_value(v) for k, v in value.asDict().items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return str(value)


#: ``sink(page_number, rows)`` stores page ``page_number`` (>= 1) of the result set being collected.
PageSink = Callable[[int, list[list[Any]]], None]


def result_set(df: DataFrame, max_rows: int, sink: PageSink | None = None) -> ResultSet:
    """Collect at most ``max_rows`` rows of ``df`` with Spark type names (``int``, ``double``, ``string``...).

    A result that fits one page is taken in one go (the common, fast case). A bigger one is
    streamed partition by partition (``toLocalIterator``, never all in the driver's memory):
    page 0 stays in the document and every further page goes to ``sink`` as soon as it is full.
    """
    metadata = [
        {"columnName": f.name, "dataType": f.dataType.simpleString(), "comment": (f.metadata or {}).get("comment", "")}
        for f in df.schema.fields
    ]
    page_rows = min(RESULT_PAGE_ROWS, max_rows) if sink is not None else max_rows
    first = df.take(page_rows + 1)
    if sink is None or len(first) <= page_rows or page_rows == max_rows:
        rows = [[json_value(v) for v in row] for row in first[:page_rows]]
        return _document(metadata, rows, len(first) > page_rows, len(rows), page_rows, 1)
    stream = df.limit(max_rows + 1).toLocalIterator(prefetchPartitions=True)
    head: list[list[Any]] = []
    pages = total = 0
    while page := [[json_value(v) for v in row] for row in itertools.islice(stream, min(page_rows, max_rows - total))]:
        if pages == 0:
            head = page
        else:
            sink(pages, page)
        pages, total = pages + 1, total + len(page)
    truncated = next(stream, None) is not None
    return _document(metadata, head, truncated, total, page_rows, max(pages, 1))


def _document(
    metadata: list[dict[str, Any]], rows: list[list[Any]], truncated: bool, total: int, page_rows: int, pages: int
) -> ResultSet:
    return {
        "metadata": metadata,
        "rows": rows,
        "truncated": truncated,
        "total_rows": total,
        "page_rows": page_rows,
        "pages": pages,
    }


def text_result_set(lines: list[str], total: int, max_rows: int, sink: PageSink | None = None) -> ResultSet:
    """Printed output as Linkis's TEXT result set (type ``"1"``): one row ``[line]`` per line, at most
    ``max_rows`` (``total`` lines were printed), paged like a table's rows (pages >= 1 go to ``sink``)."""
    kept = [[line] for line in lines[:max_rows]]
    page_rows = min(RESULT_PAGE_ROWS, max_rows) if sink is not None else max(max_rows, 1)
    pages = [kept[i : i + page_rows] for i in range(0, len(kept), page_rows)] or [[]]
    for number, page in enumerate(pages[1:], 1):
        assert sink is not None
        sink(number, page)
    document = _document([], pages[0], total > len(kept), len(kept), page_rows, len(pages))
    return {**document, "type": TEXT_TYPE}


def run_sql(
    spark: SparkSession,
    code: str,
    max_rows: int,
    say: Any,
    sinks: Callable[[int], PageSink] | None = None,
    frame: Callable[[str], DataFrame] | None = None,
    roots: Sequence[str] | None = None,
) -> list[ResultSet]:
    """Run each statement; every statement with output columns gives one result set.

    ``sinks(index)`` answers the page sink of result set ``index`` (see :func:`result_set`);
    ``frame(statement)`` turns a statement into a DataFrame (default ``spark.sql``). Every statement
    first passes the SQL guard (``roots`` default: :func:`sql_guard.roots_from_env`).
    """
    sets: list[ResultSet] = []
    statements = split_sql(code)
    if not statements:
        raise ValueError("no SQL statement in the code")
    for number, statement in enumerate(statements, 1):
        if len(statements) > 1:
            say(f"statement {number}/{len(statements)}: {statement[:200]}")
        with sql_guard.guarded(spark, statement, roots):
            df = frame(statement) if frame else spark.sql(statement)
        if df.columns:
            sets.append(result_set(df, max_rows, sinks(len(sets)) if sinks else None))
    return sets


def exec_final_value(code: str, namespace: dict[str, Any], filename: str) -> Any:
    """Exec ``code`` in ``namespace``, as a notebook cell runs: answers the value of its last
    statement when that is an expression (None otherwise)."""
    tree = ast.parse(code, filename=filename, mode="exec")
    last: ast.Expression | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        final = tree.body.pop()
        assert isinstance(final, ast.Expr)
        last = ast.Expression(final.value)
    exec(compile(tree, filename, "exec"), namespace)
    return None if last is None else eval(compile(last, filename, "eval"), namespace)


def run_python(
    namespace: dict[str, Any], code: str, max_rows: int, sinks: Callable[[int], PageSink] | None = None
) -> list[ResultSet]:
    """Exec ``code`` in ``namespace``; a final expression's value is printed (a DataFrame becomes a result set)."""
    value = exec_final_value(code, namespace, "<code>")
    if isinstance(value, DataFrame):
        return [result_set(value, max_rows, sinks(0) if sinks else None)]
    if value is not None:
        print(repr(value))
    return []


def user_traceback(err: BaseException) -> str:
    """The traceback text of ``err`` without the engine's own frames."""
    tb: TracebackType | None = err.__traceback__
    while tb is not None and os.path.dirname(tb.tb_frame.f_code.co_filename) == _ENGINE_DIR:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(err), err, tb)).rstrip()
