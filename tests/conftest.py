"""Shared test set-up: every test runs against moto unless it starts its own local stack."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ["AWS_ACCOUNT_ID_ENDPOINT_MODE"] = "disabled"
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "sparkgate")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("SPARKGATE_POOL_MAX", "0")  # no warm pool unless a test asks (tests/e2e/test_pool.py)
os.environ.pop("AWS_ENDPOINT_URL", None)

import moto  # noqa: E402,F401  - imported before any boto3 client exists
