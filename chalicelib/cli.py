"""Operator command line: ``python -m chalicelib.cli create-user --username NAME [--admin]``.

The password is read from ``SPARKGATE_NEW_PASSWORD`` or prompted for, never taken from argv.
Against the local stack it finds the running embedded AWS through the state directory; in the
cloud it uses the usual AWS credentials and ``SPARKGATE_TABLE``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path


def _point_at_local_stack() -> None:
    if os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("SPARKGATE_STAGE", "local") != "local":
        return
    from chalicelib.local.credentials import local_stack_environment

    try:  # the running stack's endpoint and platform credential (files of the stack's uid, 0600)
        os.environ.update(local_stack_environment(Path(os.environ.get("SPARKGATE_STATE_DIR", ".sparkgate"))))
    except FileNotFoundError:
        sys.exit("sparkgate: the local stack is not running (start it with `make run`)")
    except PermissionError:
        sys.exit("sparkgate: the local stack's state dir is not readable: run as the stack's user")


def main(argv: list[str] | None = None) -> int:
    """Run one operator command."""
    parser = argparse.ArgumentParser(prog="sparkgate")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-user", help="create a user (what POST /api/v1/users does)")
    create.add_argument("--username", required=True)
    create.add_argument("--admin", action="store_true", help="the user may create other users")
    args = parser.parse_args(argv)
    _point_at_local_stack()
    from chalicelib.errors import SparkgateError
    from chalicelib.users import create_user

    password = os.environ.get("SPARKGATE_NEW_PASSWORD") or getpass.getpass("password: ")
    try:
        print(json.dumps(create_user(args.username, password, admin=args.admin)))
    except SparkgateError as err:
        print(f"sparkgate: {err.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
