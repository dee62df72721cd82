"""The embedded AWS: a moto server on loopback that every boto3 client of the process uses."""

from __future__ import annotations

import logging
import os

from moto.server import ThreadedMotoServer


def start_embedded_aws(port: int = 0) -> tuple[ThreadedMotoServer, str]:
    """Start moto on 127.0.0.1 and point this process (and its children) at it."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_REGION", os.environ["AWS_DEFAULT_REGION"])
    os.environ["AWS_ACCOUNT_ID_ENDPOINT_MODE"] = "disabled"
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, real_port = server._server.server_address[:2]
    endpoint = f"http://{host}:{real_port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    return server, endpoint
