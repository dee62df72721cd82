"""The ``sparkgate`` command line.

Client commands (over HTTP, with the token ``sparkgate login`` keeps in ``~/.config/sparkgate``, 0600)::

    sparkgate login --url http://127.0.0.1:8000 --username alice      (password prompted or SPARKGATE_PASSWORD)
    sparkgate run FILE | -e CODE [--type sql|python] [-o out.csv|out.json] [--json]
    sparkgate jobs status|log|kill|result EXEC_ID [--json]
    sparkgate works list|get|create|start ...

``run`` shows a progress bar from ``progressInfo``, follows the log (HTTP polling of
``GET .../log?fromLine=``), prints result sets as tables, exits 1 when the Job fails and kills it on
Ctrl-C (as linkis-cli does).

Operator commands (what the admin routes of ``/api/v1/users`` do, without a token)::

    python -m chalicelib.cli create-user --username NAME [--admin]
    python -m chalicelib.cli list-users [--limit N] [--offset PAGE]
    python -m chalicelib.cli show-user --username NAME
    python -m chalicelib.cli set-user --username NAME [--disable|--enable] [--admin|--no-admin] [--password]
    python -m chalicelib.cli delete-user --username NAME

A password is read from ``SPARKGATE_NEW_PASSWORD`` or prompted for, never taken from argv. Disabling,
deleting or a new password revoke every token of the user; the last admin cannot be removed,
disabled or demoted.
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparkgate")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-user", help="create a user (what POST /api/v1/users does)")
    create.add_argument("--username", required=True)
    create.add_argument("--admin", action="store_true", help="the user may manage users and service tokens")
    listing = sub.add_parser("list-users", help="list users (GET /api/v1/users)")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--offset", type=int, default=0, help="page number, from 0")
    show = sub.add_parser("show-user", help="one user (GET /api/v1/users/NAME)")
    show.add_argument("--username", required=True)
    change = sub.add_parser("set-user", help="change a user (PATCH /api/v1/users/NAME)")
    change.add_argument("--username", required=True)
    state = change.add_mutually_exclusive_group()
    state.add_argument("--disable", dest="disabled", action="store_const", const=True)
    state.add_argument("--enable", dest="disabled", action="store_const", const=False)
    role = change.add_mutually_exclusive_group()
    role.add_argument("--admin", dest="is_admin", action="store_const", const=True)
    role.add_argument("--no-admin", dest="is_admin", action="store_const", const=False)
    change.add_argument("--password", action="store_true", help="set a new password (prompted or from env)")
    delete = sub.add_parser("delete-user", help="delete a user (DELETE /api/v1/users/NAME)")
    delete.add_argument("--username", required=True)
    return parser


def _password() -> str:
    return os.environ.get("SPARKGATE_NEW_PASSWORD") or getpass.getpass("password: ")


OPERATOR_COMMANDS = ("create-user", "list-users", "show-user", "set-user", "delete-user")


def main(argv: list[str] | None = None) -> int:
    """Run one command: an operator command (argparse, below) or a client command (click)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] not in OPERATOR_COMMANDS:
        from chalicelib.cli_client import client

        try:
            client.main(args=args_list, prog_name="sparkgate", standalone_mode=False)
        except SystemExit as done:
            return int(done.code or 0)
        except Exception as err:  # click's usage errors, the client's failures
            import click

            if isinstance(err, click.ClickException):
                err.show()
                return err.exit_code
            if isinstance(err, click.exceptions.Abort):
                return 130
            raise
        return 0
    return operator(args_list)


def operator(argv: list[str] | None = None) -> int:
    """Run one operator command."""
    args = _parser().parse_args(argv)
    _point_at_local_stack()
    from chalicelib import users
    from chalicelib.errors import SparkgateError

    try:
        if args.command == "create-user":
            out: object = users.create_user(args.username, _password(), admin=args.admin)
        elif args.command == "list-users":
            rows, total = users.manage_list(max(1, min(args.limit, 1000)), max(0, args.offset))
            out = {"users": rows, "total": total}
        elif args.command == "show-user":
            out = users.manage_get(args.username)
        elif args.command == "set-user":
            changes: dict[str, object] = {}
            if args.disabled is not None:
                changes["disabled"] = args.disabled
            if args.is_admin is not None:
                changes["is_admin"] = args.is_admin
            if args.password:
                changes["password"] = _password()
            out = users.manage_update(args.username, changes)
        else:
            users.manage_delete(args.username)
            out = {"deleted": args.username}
    except SparkgateError as err:
        print(f"sparkgate: {err.message}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
