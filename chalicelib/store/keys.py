"""Where the JWT signing keys come from: Secrets Manager in the cloud, a file in the state dir locally.

Both hold ``{"current": "<kid>", "keys": {"<kid>": "<hex or base64 secret>"}}`` so keys can rotate:
add a kid, switch ``current``, drop the old kid once every token it signed has expired.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from chalicelib.config import Settings
from chalicelib.store.aws import client

_CACHE: dict[str, tuple[float, dict[str, Any]]] = {}
_CACHE_SECONDS = 300.0


def _local_keys(state_dir: Path) -> dict[str, Any]:
    path = state_dir / "jwt-keys.json"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        kid = secrets.token_hex(4)
        doc = {"current": kid, "keys": {kid: secrets.token_hex(64)}}
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # first writer wins when two processes start at once
        tmp.unlink(missing_ok=True)
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _secret_keys(arn: str) -> dict[str, Any]:
    raw = client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    loaded: dict[str, Any] = json.loads(raw)
    if "keys" not in loaded:  # CloudFormation's generated layout: {"current": kid, kid: key, ...}
        loaded = {"current": loaded["current"], "keys": {k: v for k, v in loaded.items() if k != "current"}}
    return loaded


def load_signing_keys(cfg: Settings) -> dict[str, Any]:
    """The key document for this stage, cached for a few minutes per process."""
    source = cfg.jwt_secret_arn or str(cfg.state_dir.resolve())
    hit = _CACHE.get(source)
    now = time.monotonic()
    if hit and now - hit[0] < _CACHE_SECONDS:
        return hit[1]
    if cfg.jwt_secret_arn:
        doc = _secret_keys(cfg.jwt_secret_arn)
    elif cfg.is_local:
        doc = _local_keys(cfg.state_dir)
    else:
        raise RuntimeError("SPARKGATE_JWT_SECRET_ARN must be set outside the local stage")
    _CACHE[source] = (now, doc)
    return doc


def forget_cached_keys() -> None:
    """Drop cached keys (tests rotating keys call this)."""
    _CACHE.clear()
