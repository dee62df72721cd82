#!/usr/bin/env python3
"""CDK entry point: synthesizes the sparkgate stack of one stage.

Context (``-c key=value``):

- ``stage``: ``dev`` (default) or ``prod``; the stack is named ``sparkgate-<stage>``.
- ``existingClusterId``: run steps on this EMR cluster instead of creating one; it needs
  ``existingInstanceRoleArn`` (that cluster's EC2 instance role, which the runtime and supervisor
  roles trust) and must have been created with the stack's security configuration and bootstrap.
- ``emrSubnetId``, ``emrReleaseLabel``, ``emrInstanceType``, ``emrCoreInstances``,
  ``stepConcurrency``: tune the cluster the stack creates.

The account and region come from the CLI's environment (``CDK_DEFAULT_ACCOUNT``/``REGION``,
i.e. the AWS profile in use), or from ``AWS_REGION``/``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import aws_cdk as cdk

INFRA_DIR = Path(__file__).resolve().parent
REPO_ROOT = INFRA_DIR.parent
for path in (str(INFRA_DIR), str(REPO_ROOT)):
    if path not in sys.path:
        sys.path.insert(0, path)

from stacks.stage import build, settings_from_context  # noqa: E402


def main() -> None:
    """Synthesize the stack named by the context."""
    app = cdk.App()
    build(app, settings_from_context(app))
    app.synth()


if __name__ == "__main__":
    main()
