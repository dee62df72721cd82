"""``filesystem/resultsetToExcel``: one result set of the caller's as a CSV or XLSX download (Linkis's
``FsRestfulApi.resultsetToExcel``). XLSX is written by openpyxl (write-only mode, rows streamed)."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any

from chalicelib import entrance
from chalicelib.errors import BadRequest
from chalicelib.store import results as result_store
from chalicelib.tokens import Principal

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV = "text/csv; charset=utf-8"
#: Linkis's default download size (``wds.linkis.workspace.resultset.download.maxsize``) and our cap,
#: which keeps an answer under API Gateway's and Lambda's 6 MB
DEFAULT_LIMIT = 5000
MAX_LIMIT = 50000
MAX_BYTES = 5 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
_NUMERIC = {"int", "long", "short", "tinyint", "bigint", "double", "float", "decimal"}


@dataclass
class Export:
    """The file to answer."""

    body: bytes | str
    content_type: str
    filename: str


def _text(query: dict[str, str], name: str, default: str) -> str:
    value = query.get(name)
    return default if value in (None, "") else str(value)


def export(principal: Principal, query: dict[str, str]) -> Export:
    """Query: ``path`` (a result file of the caller's), ``outputFileType`` (``csv``, the default, or
    ``xlsx``), ``outputFileName`` (default ``result``), ``sheetName`` (``result``), ``csvSeperator`` /
    ``csvSeparator`` (``,``), ``nullValue`` (what a NULL cell holds, default ``NULL``), ``charset``
    (``utf-8`` only), ``limit`` (rows, default 5000, at most 50000; ``0`` or below: the cap)."""
    job, index = entrance._result_job(principal, query.get("path"))
    if index is None:
        raise BadRequest("path must name a result file", field="path")
    kind = _text(query, "outputFileType", "csv").lower()
    if kind not in ("csv", "xlsx"):
        raise BadRequest("outputFileType must be csv or xlsx", field="outputFileType")
    if _text(query, "charset", "utf-8").lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise BadRequest("charset must be utf-8", field="charset")
    name = _text(query, "outputFileName", "result")
    if not _NAME.fullmatch(name):
        raise BadRequest("outputFileName: 1-100 of A-Z a-z 0-9 _ . -", field="outputFileName")
    sheet = _text(query, "sheetName", "result")[:31]
    if any(c in sheet for c in "[]:*?/\\"):
        raise BadRequest("sheetName must not contain []:*?/\\", field="sheetName")
    separator = _text(query, "csvSeparator", _text(query, "csvSeperator", ","))
    if len(separator) != 1 or separator in '\r\n"':
        raise BadRequest("csvSeparator must be one character", field="csvSeparator")
    null = _text(query, "nullValue", entrance.LINKIS_NULL)
    limit = entrance._int_arg(query.get("limit"), "limit", DEFAULT_LIMIT, -(10**9), 10**9)
    limit = MAX_LIMIT if limit <= 0 else min(limit, MAX_LIMIT)
    owner, exec_id = job["owner"], job["exec_id"]
    document = result_store.get_result_set(owner, exec_id, index)
    if entrance.result_type(document) == entrance.TEXT_RESULT:
        return _text_export(owner, exec_id, index, document, kind, name, limit)
    metadata = list(document.get("metadata", []))
    columns = [str(m.get("columnName", f"col_{i + 1}")) for i, m in enumerate(metadata)]
    types = [entrance.linkis_type(m.get("dataType")) for m in metadata]
    rows = entrance._rows(owner, exec_id, index, document, 0, limit)
    if kind == "csv":
        out = io.StringIO()
        writer = csv.writer(out, delimiter=separator, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(
                [
                    null if v is None else entrance.linkis_value(v, types[i] if i < len(types) else "string")
                    for i, v in enumerate(row)
                ]
            )
        text = out.getvalue()
        if len(text.encode()) > MAX_BYTES:
            raise BadRequest(f"the file would exceed {MAX_BYTES} bytes; ask for fewer rows (limit)", field="limit")
        return Export(text, CSV, f"{name}.csv")
    return Export(_xlsx(columns, types, rows, sheet, null), XLSX, f"{name}.xlsx")


def _text_export(
    owner: str, exec_id: str, index: int, document: dict[str, Any], kind: str, name: str, limit: int
) -> Export:
    """A TEXT set (printed output) as a CSV of its lines (no header); XLSX is refused, as Linkis refuses
    non-table result sets (its error 80024)."""
    if kind != "csv":
        raise BadRequest("non-table result sets cannot be downloaded as excel", field="outputFileType")
    rows = entrance._rows(owner, exec_id, index, document, 0, limit)
    text = "".join(f"{row[0] if row else ''}\n" for row in rows)
    if len(text.encode()) > MAX_BYTES:
        raise BadRequest(f"the file would exceed {MAX_BYTES} bytes; ask for fewer rows (limit)", field="limit")
    return Export(text, CSV, f"{name}.csv")


def _cell(value: Any, data_type: str, null: str) -> Any:
    if value is None:
        return null
    if isinstance(value, bool) or (isinstance(value, int | float) and data_type in _NUMERIC):
        return value
    return entrance.linkis_value(value, data_type)


def _xlsx(columns: list[str], types: list[str], rows: list[list[Any]], sheet: str, null: str) -> bytes:
    from openpyxl import Workbook  # type: ignore[import-untyped]

    book = Workbook(write_only=True)
    page = book.create_sheet(sheet or "result")
    page.append(columns)
    for row in rows:
        page.append([_cell(v, types[i] if i < len(types) else "string", null) for i, v in enumerate(row)])
    out = io.BytesIO()
    book.save(out)
    data = out.getvalue()
    if len(data) > MAX_BYTES:
        raise BadRequest(f"the file would exceed {MAX_BYTES} bytes; ask for fewer rows (limit)", field="limit")
    return data
