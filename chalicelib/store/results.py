"""A Job's results in the bucket: JSON result sets (first page inline), further pages, and binary results.

- result set ``i``:  ``results/<owner>/<exec_id>/_<i>.json`` = ``{"metadata": [...], "rows": [[...]]}``
- its page ``p``:    ``results/<owner>/<exec_id>/pages/<i>/<p>.json`` = ``[[...], ...]`` (p >= 1)
- a blob:            ``results/<owner>/<exec_id>/<name>`` (a rendered PNG)
"""

from __future__ import annotations

import json
import re
from typing import Any

from chalicelib.config import settings
from chalicelib.store.aws import client

#: The file name of a result set under :func:`result_prefix`; group 1 is its index.
RESULT_FILE = re.compile(r"_(\d{1,6})\.json")


def result_prefix(owner: str, exec_id: str) -> str:
    """The S3 key prefix of a job's result sets."""
    return f"results/{owner}/{exec_id}/"


def result_file(index: int) -> str:
    """The file name of result set ``index`` (what :data:`RESULT_FILE` matches)."""
    return f"_{index}.json"


def put_result_set(owner: str, exec_id: str, index: int, document: dict[str, Any]) -> str:
    """Store result set ``index`` (``{"metadata": [...], "rows": [[...]]}``); answers its key."""
    key = result_prefix(owner, exec_id) + result_file(index)
    client("s3").put_object(
        Bucket=settings().bucket_name,
        Key=key,
        Body=json.dumps(document, default=str).encode(),
        ContentType="application/json",
    )
    return key


def result_page_key(owner: str, exec_id: str, index: int, page: int) -> str:
    """The S3 key of page ``page`` (>= 1) of result set ``index``; page 0 is in the result file itself."""
    return f"{result_prefix(owner, exec_id)}pages/{index}/{page}.json"


def put_result_page(owner: str, exec_id: str, index: int, page: int, rows: list[list[Any]]) -> None:
    """Store one further page of rows of result set ``index``."""
    client("s3").put_object(
        Bucket=settings().bucket_name,
        Key=result_page_key(owner, exec_id, index, page),
        Body=json.dumps(rows, default=str).encode(),
        ContentType="application/json",
    )


def get_result_page(owner: str, exec_id: str, index: int, page: int) -> list[list[Any]]:
    """Rows of page ``page`` (>= 1) of result set ``index``."""
    rows: list[list[Any]] = json.loads(get_object(result_page_key(owner, exec_id, index, page)))
    return rows


def get_result_set(owner: str, exec_id: str, index: int) -> dict[str, Any]:
    """Result set ``index`` as :func:`put_result_set` stored it."""
    document: dict[str, Any] = json.loads(get_object(result_prefix(owner, exec_id) + result_file(index)))
    return document


def put_result_blob(owner: str, exec_id: str, name: str, data: bytes, content_type: str) -> str:
    """Store a binary result (a rendered PNG) next to the result sets; answers its key."""
    key = f"{result_prefix(owner, exec_id)}{name}"
    client("s3").put_object(Bucket=settings().bucket_name, Key=key, Body=data, ContentType=content_type)
    return key


def get_object(key: str) -> bytes:
    """An object's bytes from the bucket."""
    body: bytes = client("s3").get_object(Bucket=settings().bucket_name, Key=key)["Body"].read()
    return body


def list_result_keys(owner: str, exec_id: str) -> list[str]:
    """A job's result-set keys, in result order."""
    prefix = result_prefix(owner, exec_id)
    got = client("s3").list_objects_v2(Bucket=settings().bucket_name, Prefix=prefix, Delimiter="/")
    indexed = []
    for obj in got.get("Contents", []):
        match = RESULT_FILE.fullmatch(obj["Key"][len(prefix) :])
        if match:
            indexed.append((int(match.group(1)), obj["Key"]))
    return [key for _, key in sorted(indexed)]
