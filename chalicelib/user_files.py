"""Where a user's own files live on this machine, and which folders are shared read-only.

Two kinds of local folders (see docs/security.md):

- **shared roots** (``SPARKGATE_DATA_ROOTS``, colon-separated): read-only for everyone, marked by an
  admin (the sample data lives in one). Kernels can read them; nobody's code can write them.
- **the user's own area** ``<SPARKGATE_USER_ROOT>/<user_id>/`` (default ``.sparkgate-users``): owned
  by that user's kernel uid, mode 0700, the kernel's home and working folder. Only that user's
  kernels (and the trusted platform) can open it.

No boto3 and no pyspark here.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_USER_ROOT = ".sparkgate-users"


def user_root() -> Path:
    """The folder holding every user's own area (``SPARKGATE_USER_ROOT``), absolute."""
    return Path(os.path.abspath(os.environ.get("SPARKGATE_USER_ROOT", DEFAULT_USER_ROOT)))


def user_area(user_id: str) -> Path:
    """``<user root>/<user_id>``: the user's own folder (not created here)."""
    if not user_id or "/" in user_id or user_id in (".", "..") or "\x00" in user_id:
        raise ValueError(f"not a user id: {user_id!r}")
    return user_root() / user_id
