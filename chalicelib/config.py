"""Stage configuration, read from the environment (set by `.chalice/config.json` or the local stack)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: The project directory (the one holding ``app.py``), whatever the working directory is.
PROJECT_DIR = Path(__file__).resolve().parents[1]
#: The shared data root when ``SPARKGATE_DATA_ROOTS`` is unset: the sample data shipped in the repo.
DEFAULT_DATA_ROOT = PROJECT_DIR / "data"


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def _cap(name: str, default: int) -> int:
    """A per-user cap from the environment: a whole number, 0 for no cap; anything else is the default."""
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() else default


@dataclass(frozen=True)
class Settings:
    """Everything a handler needs to know about the stage it runs in."""

    stage: str = field(default_factory=lambda: _env("SPARKGATE_STAGE", "local"))
    table_name: str = field(default_factory=lambda: _env("SPARKGATE_TABLE", "sparkgate"))
    bucket_name: str = field(default_factory=lambda: _env("SPARKGATE_BUCKET", "sparkgate"))
    state_dir: Path = field(default_factory=lambda: Path(_env("SPARKGATE_STATE_DIR", ".sparkgate")))
    jwt_secret_arn: str = field(default_factory=lambda: _env("SPARKGATE_JWT_SECRET_ARN"))
    token_ttl_seconds: int = field(default_factory=lambda: int(_env("SPARKGATE_TOKEN_TTL", "604800")))
    runner: str = field(default_factory=lambda: _env("SPARKGATE_RUNNER", "local"))
    spark_master: str = field(default_factory=lambda: _env("SPARKGATE_SPARK_MASTER", "local[*]"))
    emr_cluster_id: str = field(default_factory=lambda: _env("SPARKGATE_EMR_CLUSTER_ID"))
    engine_uri: str = field(default_factory=lambda: _env("SPARKGATE_ENGINE_URI"))
    ws_endpoint: str = field(default_factory=lambda: _env("SPARKGATE_WS_ENDPOINT"))
    #: Shared read-only data roots: ``SPARKGATE_DATA_ROOTS`` (colon-separated, as given), else ``<project>/data``.
    data_roots: tuple[str, ...] = field(default_factory=lambda: data_roots_from_env())
    #: Live session drivers per user (geo sessions and the entrance's warm session); 0: no cap.
    max_sessions_per_user: int = field(default_factory=lambda: _cap("SPARKGATE_MAX_SESSIONS_PER_USER", 4))
    #: Queued and running Jobs per user (every surface); 0: no cap.
    max_active_jobs_per_user: int = field(default_factory=lambda: _cap("SPARKGATE_MAX_ACTIVE_JOBS_PER_USER", 20))
    #: A running driver whose heartbeat is older than this (or than three of its own intervals) is dead.
    heartbeat_stale_seconds: float = field(
        default_factory=lambda: float(_env("SPARKGATE_HEARTBEAT_STALE_SECONDS", "30"))
    )
    #: A driver that has not reported running this long after its start is dead (EMR steps may queue).
    driver_start_timeout_seconds: float = field(
        default_factory=lambda: float(_env("SPARKGATE_DRIVER_START_TIMEOUT", "300"))
    )
    #: A task's Job that no driver took within this many seconds is failed (``tasks``).
    task_start_grace_seconds: float = field(
        default_factory=lambda: float(_env("SPARKGATE_TASK_START_GRACE_SECONDS", "120"))
    )
    #: Warm drivers kept for users who have none yet (fresh kernel uids); 0: none.
    pool_size: int = field(default_factory=lambda: _cap("SPARKGATE_POOL_SIZE", 1))
    #: Warm spare drivers kept per recently active user (under the user's own kernel uid); 0: none.
    pool_per_user: int = field(default_factory=lambda: _cap("SPARKGATE_POOL_PER_USER", 1))
    #: At most this many warm drivers in all (fresh and spare); 0: no pool at all. Off by default on EMR
    #: (a waiting step holds cluster capacity; set it per stage to keep spares there).
    pool_max: int = field(
        default_factory=lambda: _cap("SPARKGATE_POOL_MAX", 4 if _env("SPARKGATE_RUNNER", "local") == "local" else 0)
    )
    #: A warm driver nobody claimed within this many seconds exits.
    pool_idle_seconds: int = field(default_factory=lambda: _cap("SPARKGATE_POOL_IDLE_SECONDS", 600))

    @property
    def is_local(self) -> bool:
        """True on the one-machine stage, where defaults for development are allowed."""
        return self.stage == "local"


def data_roots_from_env() -> tuple[str, ...]:
    """``SPARKGATE_DATA_ROOTS`` split on ``:``; when unset, the repo's own ``data/`` folder (absolute)."""
    raw = os.environ.get("SPARKGATE_DATA_ROOTS")
    if raw is None:
        return (str(DEFAULT_DATA_ROOT),)
    return tuple(p for p in raw.split(":") if p)


def settings() -> Settings:
    """The current settings (read fresh so tests and the local stack can change the environment)."""
    return Settings()
