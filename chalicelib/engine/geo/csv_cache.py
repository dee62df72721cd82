"""A columnar (Parquet) copy of a local CSV table, so maps of it can take the direct read.

A CSV table (``/loadfile`` with ``format: csv``) is parsed again by Spark on every query,
and its rows reach the map's Python workers through the row path.  The first map of a
CSV file here writes the file's numeric columns to Parquet **with Spark's own CSV
reader** (same options, same schema as the table, so the very values Spark would give),
and every later map reads that copy directly (:mod:`parquet_scan`).

Correctness when the file changes: the copy is keyed by the file's real path, device,
inode, size, modification and status-change times (``st_ctime`` cannot be set by any
user; every write moves it), the reader options, the table's schema and Spark's version.
A map uses a copy only when the file as it is now (``os.stat``) is also the file Spark
listed for the table (same length and modification time): otherwise it takes the row
path and reads exactly what Spark reads.  The file is stat'ed again after the copy was
written, and a copy of a file that changed meanwhile is thrown away.  A new version of
a file replaces the copies of its older versions.

Where it lives: ``$SPARKGATE_GEO_CSV_CACHE`` or ``$HOME/.cache/sparkgate-geo-csv``; a
kernel's ``HOME`` is the user's own area (``engine/sandbox.py``), and the kernel runs as
the user's uid, so the copies are written as that user, in that user's area.  Every
folder from ``HOME`` down is created mode 0700 and checked with ``lstat`` (a real folder,
not a symlink, owned by this uid, no group/other bits); the copy's files are listed
without following symlinks.  Anything unexpected means no copy (the row path), never a
read elsewhere.  Only ``PERMISSIVE`` parsing is copied (in ``DROPMALFORMED``/``FAILFAST``
modes Spark's answer depends on which columns a query reads).  Only with a ``local`` master: on a
cluster the copy would be written and read by executors, which run as another uid (and on other
hosts) and cannot use the user's private area; there maps of CSV tables take the row path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pyspark.sql import SparkSession
from pyspark.sql.types import StructType

__all__ = ["CACHE_ENV", "FORMAT_VERSION", "cache_root", "columnar_files"]

CACHE_ENV = "SPARKGATE_GEO_CSV_CACHE"
#: Bump when the copy's layout changes: older copies are then never used.
FORMAT_VERSION = 1
#: CSV files larger than this (in total) are not copied.
MAX_CSV_BYTES = 8 << 30
#: Spark types the direct read can use, the only ones copied.
_COPIED_TYPES = frozenset({"double", "float", "long", "integer", "short", "byte"})

FileStatus = tuple[str, int, int]  # uri, length, modification time (ms)
_PATTERN_CHARS = frozenset("*?[]{}\\")


def _private_dir(path: Path, create: bool) -> bool:
    """``path`` is (or is made) a real folder owned by this uid with mode 0700."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return False
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        return False
    if info.st_mode & 0o077:
        os.chmod(path, 0o700, follow_symlinks=False)
    return True


def cache_root() -> Path | None:
    """The user's private cache folder (created), or None when it cannot be trusted."""
    explicit = os.environ.get(CACHE_ENV)
    try:
        if explicit:
            root = Path(os.path.abspath(explicit))
            return root if _private_dir(root.parent, create=False) and _private_dir(root, True) else None
        home = Path(os.path.abspath(os.environ.get("HOME") or "/nonexistent"))
        info = os.lstat(home)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return None
        path = home
        for part in (".cache", "sparkgate-geo-csv"):
            path = path / part
            if not _private_dir(path, create=True):
                return None
        return path
    except OSError:
        return None


def _local_path(uri: str) -> str | None:
    """The local path of a URI as Hadoop prints it (``file:/a/b``: not percent-encoded)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("file", "") or parsed.netloc not in ("", "localhost") or parsed.query:
        return None
    return parsed.path


def _options(relation: Any) -> dict[str, str] | None:
    raw = relation.options()
    raw = raw.originalMap() if hasattr(raw, "originalMap") else raw
    keys = raw.keys().toSeq()
    out = {}
    for i in range(keys.size()):
        key = str(keys.apply(i))
        out[key] = str(raw.apply(key))
    out.pop("path", None)
    out.pop("paths", None)
    if out.get("mode", "PERMISSIVE").upper() != "PERMISSIVE":
        return None
    return dict(sorted(out.items()))


def _entry_key(spark: SparkSession, real: str, info: os.stat_result, options: dict[str, str], schema: str) -> str:
    ident = {
        "v": FORMAT_VERSION,
        "spark": spark.version,
        "path": real,
        "file": [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns],
        "options": options,
        "schema": schema,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    fields = ("st_dev", "st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


def _parquet_files(entry: Path) -> list[FileStatus] | None:
    """The copy's Parquet files (regular files of this uid, no symlinks), or None."""
    if not _private_dir(entry, create=False):
        return None
    out = []
    with os.scandir(entry) as it:
        for item in it:
            if not item.name.endswith(".parquet"):
                continue
            info = item.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                return None
            out.append((Path(item.path).as_uri(), int(info.st_size), int(info.st_mtime_ns // 1_000_000)))
    return sorted(out) or None


def _write_copy(spark: SparkSession, root: Path, source: str, options: dict[str, str], schema: StructType) -> Path:
    """Write the numeric columns of ``source`` as Spark reads them into a new folder under root."""
    tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=root))
    out = tmp / "copy"
    try:
        reader = spark.read.format("csv").schema(schema)
        for key, value in options.items():
            reader = reader.option(key, value)
        cols = [f"`{f.name}`" for f in schema.fields if f.dataType.typeName() in _COPIED_TYPES]
        reader.load(source).selectExpr(*cols).write.mode("error").parquet(str(out))
        os.chmod(out, 0o700)
        with os.scandir(out) as it:  # owner-only, whatever the umask (the folder is 0700 anyway)
            for item in it:
                if item.is_file(follow_symlinks=False):
                    os.chmod(item.path, 0o600)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _copy_for(
    spark: SparkSession, root: Path, status: FileStatus, options: dict[str, str], schema: StructType
) -> list[FileStatus] | None:
    path = _local_path(status[0])
    if path is None:
        return None
    real = os.path.realpath(path)
    if any(ch in real for ch in _PATTERN_CHARS):
        return None  # Spark would read the copy's source path as a pattern: it could name more files
    info = os.stat(real)
    if not stat.S_ISREG(info.st_mode) or info.st_size != status[1] or info.st_mtime_ns // 1_000_000 != status[2]:
        return None  # the file is not the one Spark listed for the table: the row path reads it
    schema_json = schema.json()
    prefix = hashlib.sha256(real.encode()).hexdigest()[:16]
    entry = root / f"{prefix}-{_entry_key(spark, real, info, options, schema_json)}"
    files = _parquet_files(entry) if os.path.lexists(entry) else None
    if files is not None:
        return files
    if os.path.lexists(entry):
        return None  # something that is not our copy sits there: leave it, use the row path
    tmp = _write_copy(spark, root, Path(real).as_uri(), options, schema)
    try:
        if not _same_file(info, os.stat(real)):
            return None  # changed while being copied
        with contextlib.suppress(OSError):  # another kernel of this user made it first
            os.rename(tmp / "copy", entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in root.iterdir():  # copies of older versions of this file
        if old.name.startswith(prefix + "-") and old != entry and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
    return _parquet_files(entry)


def columnar_files(spark: SparkSession, relation: Any, files: list[FileStatus]) -> list[FileStatus] | None:
    """Parquet files holding the numeric columns of the CSV ``relation`` (its ``files`` as Spark
    listed them), written on first use; None when there is no trustworthy copy (row path)."""
    try:
        if not spark.sparkContext.master.startswith("local"):
            return None  # on a cluster executors write and read the copy: the driver's private area is not theirs
        options = _options(relation)
        if options is None or sum(st[1] for st in files) > MAX_CSV_BYTES:
            return None
        schema = StructType.fromJson(json.loads(str(relation.dataSchema().json())))
        root = cache_root()
        if root is None:
            return None
        out: list[FileStatus] = []
        for status in files:
            copy = _copy_for(spark, root, status, options, schema)
            if copy is None:
                return None
            out.extend(copy)
        return out
    except Exception:  # no copy (unreadable file, Spark refused, disk full...): the row path
        return None
