"""Structured logging and metrics (Powertools), shared by every handler."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics

os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "sparkgate")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "sparkgate")

logger = Logger()
metrics = Metrics()
