"""Save and restore the local stack's table and bucket, so its state survives a restart.

The snapshot is plain files under the state directory: ``table.jsonl`` (one item per line in
DynamoDB's typed JSON) and ``s3/<key>`` for every object. On the local stack a snapshot is the
base of the embedded AWS's write-ahead log (:mod:`chalicelib.local.journal`): ``cut`` dumps the
table at the instant the log moves to a new generation, and ``table.jsonl``'s first line names
that generation (``{"__wal_generation__": n}``), so table and log position are replaced together.
Writes go to a temporary file first, then replace the old one, so a crash mid-save never leaves a
torn snapshot. The snapshot holds every item (password hashes included): its files are 0600 and its directories 0700.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chalicelib.config import Settings
from chalicelib.observability import logger
from chalicelib.store.aws import client


def _scan_items(table_name: str) -> list[dict[str, Any]]:
    ddb = client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table_name, "ConsistentRead": True}
    while True:
        page = ddb.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


WAL_KEY = "__wal_generation__"

#: answers (every item, the write-ahead log generation that starts right after them)
Cut = Callable[[], tuple[list[dict[str, Any]], int]]


class Snapshotter:
    """Writes the table and bucket to ``state_dir`` when they changed since the last save.

    With ``cut`` the table comes from it (an exact dump at a log rotation) instead of a scan, and
    ``wal_generation`` is the first log generation the snapshot does not hold (set by
    :meth:`restore` and :meth:`save`).
    """

    def __init__(self, cfg: Settings, cut: Cut | None = None) -> None:
        self.cfg = cfg
        self.root = cfg.state_dir / "aws"
        self.cut = cut
        self.wal_generation = 0
        self._table_digest = ""
        self._etags: dict[str, str] = {}

    def restore(self) -> int:
        """Load a previous snapshot into the (empty) table and bucket; returns the item count."""
        table_file = self.root / "table.jsonl"
        count = 0
        if table_file.exists():
            ddb = client("dynamodb")
            lines = [line for line in table_file.read_text().splitlines() if line.strip()]
            if lines and WAL_KEY in lines[0]:
                self.wal_generation = int(json.loads(lines.pop(0))[WAL_KEY])
            for start in range(0, len(lines), 25):
                batch = [{"PutRequest": {"Item": json.loads(line)}} for line in lines[start : start + 25]]
                pending: dict[str, Any] = {self.cfg.table_name: batch}
                while pending:
                    pending = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            count = len(lines)
            self._table_digest = hashlib.sha256(table_file.read_bytes()).hexdigest()
        s3_root = self.root / "s3"
        if s3_root.exists():
            s3 = client("s3")
            for path in s3_root.rglob("*"):
                if path.is_file():
                    key = path.relative_to(s3_root).as_posix()
                    s3.put_object(Bucket=self.cfg.bucket_name, Key=key, Body=path.read_bytes())
            for obj in self._list_objects():
                self._etags[obj["Key"]] = obj["ETag"]
        return count

    def _list_objects(self) -> list[dict[str, Any]]:
        s3 = client("s3")
        out: list[dict[str, Any]] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.cfg.bucket_name):
            out.extend(page.get("Contents", []))
        return out

    def save(self) -> bool:
        """Write what changed since the last save; True when anything was written."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        generation: int | None = None
        if self.cut is not None:
            items, generation = self.cut()
        else:
            items = _scan_items(self.cfg.table_name)
        lines = sorted(json.dumps(i, sort_keys=True) for i in items)
        if generation is not None:
            lines.insert(0, json.dumps({WAL_KEY: generation}))
        data = ("\n".join(lines) + "\n").encode()
        digest = hashlib.sha256(data).hexdigest()
        changed = False
        if digest != self._table_digest:
            _atomic_write(self.root / "table.jsonl", data)
            self._table_digest = digest
            changed = True
        s3 = client("s3")
        s3_root = self.root / "s3"
        seen: dict[str, str] = {}
        for obj in self._list_objects():
            key, etag = obj["Key"], obj["ETag"]
            if not _safe_key(key):
                logger.warning("object not snapshotted: its key leaves the snapshot folder", extra={"key": key})
                continue
            seen[key] = etag
            if self._etags.get(key) != etag:
                body = s3.get_object(Bucket=self.cfg.bucket_name, Key=key)["Body"].read()
                _atomic_write(s3_root / key, body)
                changed = True
        for gone in set(self._etags) - set(seen):
            (s3_root / gone).unlink(missing_ok=True)
            changed = True
        self._etags = seen
        if generation is not None:
            self.wal_generation = generation
        return changed


def _safe_key(key: str) -> bool:
    """True when ``s3/<key>`` names a file inside the snapshot's ``s3`` folder."""
    parts = key.split("/")
    return not key.startswith("/") and all(part not in ("", ".", "..") for part in parts)


def _private_dirs(path: Path) -> None:
    """Create ``path`` and missing parents mode 0700 (``mkdir(parents=True)`` gives parents the umask's mode)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    _private_dirs(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a left-over of a crash may have another mode
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
