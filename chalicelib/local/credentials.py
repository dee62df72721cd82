"""The local stack's platform credential: what its embedded AWS and ``@connections`` API accept.

The stack generates one at every start (:meth:`Credentials.generate`), exports it to its own
environment (the engine supervisors it starts inherit it) and writes it to
``<state dir>/aws-credentials``, mode 0600 in a 0700 folder, so operator tools running as the
stack's uid (``make user``, tests, benches) can reach the running stack with
:func:`local_stack_environment`. Other uids can read neither the file nor the stack's environment.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: the file, in the state dir, holding the running stack's credential
CREDENTIALS_FILE = "aws-credentials"
#: the file, in the state dir, holding the running stack's embedded AWS endpoint
ENDPOINT_FILE = "aws-endpoint"
_KEY_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class Credentials:
    """The platform credential: an access key id and its secret."""

    access_key_id: str
    secret_access_key: str = field(repr=False)  # never in a log line or a traceback

    @classmethod
    def generate(cls) -> Credentials:
        """A fresh random credential shaped like an AWS one (``AKIA`` + 16, 40-character secret)."""
        key_id = "AKIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
        return cls(key_id, secrets.token_urlsafe(30))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Credentials | None:
        """``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` of ``environ`` (default: this process), if both are set."""
        env = os.environ if environ is None else environ
        key_id, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        return cls(key_id, secret) if key_id and secret else None

    def save(self, path: Path) -> None:
        """Write to ``path`` (mode 0600, replaced atomically)."""
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key}, fh)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Credentials:
        """Read what :meth:`save` wrote."""
        doc = json.loads(path.read_text())
        return cls(str(doc["aws_access_key_id"]), str(doc["aws_secret_access_key"]))


def local_stack_environment(state_dir: Path) -> dict[str, str]:
    """The variables that point boto3 at the running local stack of ``state_dir`` with its credential.

    Raises ``FileNotFoundError`` when no stack has started there.
    """
    endpoint = (state_dir / ENDPOINT_FILE).read_text().strip()
    credentials = Credentials.load(state_dir / CREDENTIALS_FILE)
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }
