"""Where a user's own files live on this machine, which folders are shared read-only, and the one
resolver every input path goes through.

Two kinds of local folders (see docs/security.md):

- **shared roots** (``SPARKGATE_DATA_ROOTS``, colon-separated): read-only for everyone, marked by an
  admin (the sample data lives in one). Kernels can read them; nobody's code can write them.
- **the user's own area** ``<SPARKGATE_USER_ROOT>/<user_id>/`` (default ``.sparkgate-users``): owned
  by that user's kernel uid, mode 0700, the kernel's home and working folder. Only that user's
  kernels (and the trusted platform) can open it.

And one kind of object: ``s3://<stage bucket>/uploads/<user_id>/...``, the user's uploads.

:func:`resolve_local` decides for a local path (geo ``/loadfile``, a work's artefact, a map's
``icon_path``); :func:`upload_key` for an upload. Both answer the same way for a path that is
missing and for one that exists but is not the caller's (another user's area, the state dir, any
folder outside the roots): one :class:`~chalicelib.errors.BadRequest` whose message names the places
the caller may use and never the path that was refused, so an answer tells nothing about files
the caller may not read.

These checks run in the trusted handler, before anything reaches a kernel; they are not the only
fence (the kernel runs as the user's own uid and cannot open other users' areas), and a user who
swaps a symlink in their own area between this check and the read only reaches what their own uid
can read.

No boto3 and no pyspark here.
"""

from __future__ import annotations

import glob as globlib
import itertools
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from chalicelib.config import settings
from chalicelib.errors import BadRequest

DEFAULT_USER_ROOT = ".sparkgate-users"
#: Characters that make a path a pattern (Python's glob and Hadoop's: ``*``, ``?``, ``[..]``, ``{a,b}``).
GLOB_CHARS = frozenset("*?[]{}")
#: Characters Spark (Hadoop's ``Path``) would read as a pattern in a path it is handed.
SPARK_PATTERN_CHARS = frozenset("*?[]{}\\")
MAX_PATH_CHARS = 4096
MAX_MATCHES = 10_000
MAX_FOLDER_ENTRIES = 100_000
MAX_BRACE_ALTERNATIVES = 256
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")

Kind = Literal["file", "file_or_folder"]


def user_root() -> Path:
    """The folder holding every user's own area (``SPARKGATE_USER_ROOT``), absolute."""
    return Path(os.path.abspath(os.environ.get("SPARKGATE_USER_ROOT", DEFAULT_USER_ROOT)))


def user_area(user_id: str) -> Path:
    """``<user root>/<user_id>``: the user's own folder (not created here)."""
    if not user_id or "/" in user_id or user_id in (".", "..") or "\x00" in user_id:
        raise ValueError(f"not a user id: {user_id!r}")
    return user_root() / user_id


def shared_roots() -> tuple[Path, ...]:
    """The shared read-only roots (``SPARKGATE_DATA_ROOTS``) as absolute real paths."""
    return tuple(Path(os.path.realpath(root)) for root in settings().data_roots)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


class _Places:
    """What one caller may read: their own area and the shared roots, minus what nobody may."""

    def __init__(self, user_id: str, shared: Sequence[Path], shared_setting: str) -> None:
        self.area = user_area(user_id)
        self.real_area = Path(os.path.realpath(self.area))
        self.shared = tuple(Path(os.path.realpath(root)) for root in shared)
        self.users = Path(os.path.realpath(user_root()))
        self.state = Path(os.path.realpath(settings().state_dir))
        self.shared_setting = shared_setting

    def allows(self, real: Path) -> bool:
        """Whether the real path ``real`` is the caller's to read."""
        if _inside(real, self.state):
            return False  # keys, the embedded AWS's state: never, whatever the roots say
        if _inside(real, self.real_area):
            return True
        if _inside(real, self.users):
            return False  # another user's area, even under a shared root
        return any(_inside(real, root) for root in self.shared)

    def refusal(self, what: str, kind: Kind) -> BadRequest:
        """The one answer for every path the caller may not read or that is not there."""
        noun = "file" if kind == "file" else "file or folder"
        roots = ", ".join(str(r) for r in self.shared) or "none configured"
        return BadRequest(
            f"{what} is not a {noun} in your data area ({self.area}) or the shared roots ({roots}); "
            f"see {self.shared_setting}",
            field=what,
        )


def check_text(raw: Any, what: str) -> str:
    """The path text with what no path may hold refused: empty, NUL or control characters,
    over-long, ``..`` components. Answers it stripped of surrounding white space."""
    if not isinstance(raw, str) or not raw.strip():
        raise BadRequest(f"{what} is required", field=what)
    text = raw.strip()
    if len(text) > MAX_PATH_CHARS:
        raise BadRequest(f"{what} must be at most {MAX_PATH_CHARS} characters", field=what)
    if "\x00" in text:
        raise BadRequest(f"{what} must not contain a NUL byte", field=what)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise BadRequest(f"{what} must not contain control characters", field=what)
    if ".." in text.replace("\\", "/").split("/"):
        raise BadRequest(f"{what} must not contain '..'", field=what)
    return text


def is_upload_uri(raw: Any) -> bool:
    """Whether ``raw`` names an S3 object (``s3://`` or ``s3a://``)."""
    return isinstance(raw, str) and raw.strip().startswith(("s3://", "s3a://"))


def upload_key(user_id: str, raw: Any, *, what: str) -> str:
    """The S3 key ``raw`` names, if it is the caller's upload: ``s3://<stage bucket>/uploads/<user_id>/<key>``
    (``s3a://`` also accepted). BadRequest otherwise, naming the prefix the caller may use.

    Brace patterns and backslashes are refused (Hadoop expands ``{a,b}`` before it normalises a
    path, so ``{x,..}`` would reach another prefix); ``*``, ``?`` and ``[..]`` stay (they never cross
    a ``/``).
    """
    text = check_text(raw, what)
    bucket = settings().bucket_name
    prefix = f"uploads/{user_id}/"
    refusal = BadRequest(f"{what} is not an object in your uploads (s3://{bucket}/{prefix})", field=what)
    if not is_upload_uri(text):
        raise refusal
    got_bucket, _, key = text.split("://", 1)[1].partition("/")
    if got_bucket != bucket or not key.startswith(prefix) or len(key) == len(prefix) or "//" in key:
        raise refusal
    if any(c in key for c in "{}\\"):
        raise BadRequest(f"{what} must not contain '{{', '}}' or '\\'", field=what)
    return key


def expand_braces(pattern: str, limit: int = MAX_BRACE_ALTERNATIVES) -> list[str]:
    """``a{b,c}d`` -> ``[abd, acd]`` (nested braces too), as Hadoop's glob expands them."""
    out: list[str] = []
    pending = [pattern]
    while pending:
        current = pending.pop()
        start = current.find("{")
        if start < 0:
            out.append(current)
            if len(out) > limit:
                raise ValueError(f"more than {limit} alternatives")
            continue
        depth, end, cuts = 0, -1, [start]
        for i in range(start, len(current)):
            if current[i] == "{":
                depth += 1
            elif current[i] == "}":
                depth -= 1
                if depth == 0:
                    end = i
                    break
            elif current[i] == "," and depth == 1:
                cuts.append(i)
        if end < 0:
            raise ValueError("unbalanced '{'")
        cuts.append(end)
        head, tail = current[:start], current[end + 1 :]
        for left, right in itertools.pairwise(cuts):
            pending.append(head + current[left + 1 : right] + tail)
        if len(pending) + len(out) > limit:
            raise ValueError(f"more than {limit} alternatives")
    return sorted(set(out))


def _pattern_base(pattern: str) -> str:
    """The leading folders of ``pattern`` before its first pattern component."""
    parts = pattern.split("/")
    fixed: list[str] = []
    for part in parts[:-1]:
        if any(c in GLOB_CHARS for c in part):
            break
        fixed.append(part)
    return "/".join(fixed) or "/"


def _matches(pattern: str, places: _Places, what: str, kind: Kind) -> list[Path]:
    """Every match of one brace-free pattern, each checked; refused when one is not the caller's."""
    base = Path(os.path.realpath(_pattern_base(pattern)))
    if not places.allows(base):
        raise places.refusal(what, kind)  # never list a folder the caller may not read
    found: list[Path] = []
    for match in globlib.iglob(pattern.replace("[^", "[!")):
        real = Path(os.path.realpath(match))
        if not places.allows(real):
            raise places.refusal(what, kind)
        found.append(real)
        if len(found) > MAX_MATCHES:
            raise BadRequest(f"{what} matches more than {MAX_MATCHES} files; narrow the pattern", field=what)
    return found


def _folder_is_theirs(folder: Path, places: _Places, what: str) -> bool:
    """Whether every entry under ``folder`` (links followed, as Spark follows them) is the caller's."""
    pending, seen, count = [folder], set(), 0
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue  # unreadable: Spark will say so
        for entry in entries:
            count += 1
            if count > MAX_FOLDER_ENTRIES:
                raise BadRequest(f"{what} holds more than {MAX_FOLDER_ENTRIES} entries", field=what)
            real = Path(os.path.realpath(entry.path))
            if not places.allows(real):
                return False
            if real.is_dir():
                pending.append(real)
    return True


def _accept(real: Path, places: _Places, what: str, kind: Kind, max_bytes: int | None) -> bool:
    """Whether the existing real path ``real`` is the caller's and of the right kind.

    False for everything that must look like "not there" (outside, missing, wrong kind); a
    BadRequest only about a path that is the caller's (too large, too many entries).
    """
    if not places.allows(real):
        return False
    try:
        info = os.stat(real)
    except OSError:
        return False
    if stat.S_ISREG(info.st_mode):
        if max_bytes is not None and info.st_size > max_bytes:
            raise BadRequest(f"{what} is larger than {max_bytes} bytes", field=what)
        return True
    if kind == "file_or_folder" and stat.S_ISDIR(info.st_mode):
        return _folder_is_theirs(real, places, what)
    return False  # a folder where a file is wanted, a device, a FIFO


def _bases(text: str, places: _Places) -> list[Path | None]:
    """Where a path is looked for: as given when absolute, else the own area, then each shared root."""
    return [None] if text.startswith("/") else [places.area, *places.shared]


def resolve_local(
    user_id: str,
    raw: Any,
    *,
    what: str,
    kind: Kind = "file",
    patterns: bool = False,
    must_exist: bool = True,
    max_bytes: int | None = None,
    shared: Sequence[Path] | None = None,
    shared_setting: str = "SPARKGATE_DATA_ROOTS",
) -> list[str]:
    """The real local paths ``raw`` names for user ``user_id``; BadRequest (``field=what``) otherwise.

    - ``raw`` is absolute, or relative to the caller's own area, then to each shared root (the
      first that holds it wins).
    - Every path is compared after :func:`os.path.realpath` (symlinks followed): it must lie in the
      caller's own area or in a shared root (``shared``, default :func:`shared_roots`), and never
      in the state dir or another user's area (even under a shared root).
    - ``kind="file"`` wants a regular file (at most ``max_bytes``); ``"file_or_folder"`` also takes a
      folder, each entry of which (links followed, as Spark follows them) must be the caller's too.
    - ``patterns=True`` (the path goes to Spark, which expands patterns): ``* ? [..] {a,b}`` are
      expanded here (Hadoop's ``[^..]`` read as ``[!..]``); the folder before the first pattern
      component must be the caller's, every match must be, and at least one must exist. The answer
      is the explicit list, so nothing is left for Spark to expand: a path whose real name holds
      pattern characters is refused. ``patterns=False`` refuses pattern characters.
    - ``must_exist=False`` (a work saved before its file is): a path that is the caller's but not
      there yet is answered as it would resolve.

    A missing path and a path that is not the caller's get the same message.
    """
    text = check_text(raw, what)
    if is_upload_uri(text) or "://" in text or _SCHEME.match(text):
        raise BadRequest(
            f"{what} must be a local path (no URL scheme) or s3://<bucket>/uploads/<your user id>/...", field=what
        )
    places = _Places(user_id, shared if shared is not None else shared_roots(), shared_setting)
    if any(c in GLOB_CHARS for c in text):
        if not patterns:
            raise BadRequest(f"{what} must name one file (no * ? [ ] {{ }})", field=what)
        return _expand(text, places, what, kind, max_bytes)
    for base in _bases(text, places):
        real = Path(os.path.realpath(text if base is None else base / text))
        if _accept(real, places, what, kind, max_bytes):
            return [_spark_safe(str(real), what) if patterns else str(real)]
    if not must_exist:
        for base in _bases(text, places):
            real = Path(os.path.realpath(text if base is None else base / text))
            if places.allows(real) and not os.path.lexists(real):
                return [str(real)]
    raise places.refusal(what, kind)


def _expand(text: str, places: _Places, what: str, kind: Kind, max_bytes: int | None) -> list[str]:
    try:
        expanded = expand_braces(text)
    except ValueError as err:
        raise BadRequest(f"{what}: {err}", field=what) from None
    if any(".." in one.split("/") for one in expanded):
        raise BadRequest(f"{what} must not contain '..'", field=what)
    for base in _bases(text, places):
        found: set[Path] = set()
        for one in expanded:
            found.update(_matches(one if base is None else str(base / one), places, what, kind))
        if not found:
            continue
        if not all(_accept(real, places, what, kind, max_bytes) for real in found):
            raise places.refusal(what, kind)
        return [_spark_safe(str(real), what) for real in sorted(found)]
    raise places.refusal(what, kind)


def _spark_safe(path: str, what: str) -> str:
    if any(c in SPARK_PATTERN_CHARS for c in path):
        raise BadRequest(
            f"{what} resolves to a name holding * ? [ ] {{ }} or \\, which Spark would read as a pattern; rename it",
            field=what,
        )
    return path
