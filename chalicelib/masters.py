"""Which Spark master URLs a session may ask for: an admin's allow-list per stage.

``SPARKGATE_MASTER_ALLOWLIST`` is a comma-separated list of exact master URLs (``yarn``,
``spark://10.0.0.5:7077``, ...); the entry ``local[N]`` allows any ``local[<number>]``. Default:
``local[*],local[N]``: a user can never point a session at a cluster of their choosing.
"""

from __future__ import annotations

import os
import re

DEFAULT_ALLOWLIST = "local[*],local[N]"
_LOCAL_N = re.compile(r"^local\[[1-9][0-9]{0,3}\]$")


def allowlist() -> list[str]:
    """The allowed entries, as configured."""
    raw = os.environ.get("SPARKGATE_MASTER_ALLOWLIST", "").strip() or DEFAULT_ALLOWLIST
    return [entry.strip() for entry in raw.split(",") if entry.strip()]


def allowed(master: str) -> bool:
    """True when ``master`` is on the allow-list."""
    entries = allowlist()
    return master in entries or ("local[N]" in entries and bool(_LOCAL_N.match(master)))
