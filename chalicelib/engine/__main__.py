"""``python -m chalicelib.engine session --session-id ID --generation N`` | ``batch --exec-id ID``
| ``pool --pool-id ID`` (a warm pool driver, :mod:`chalicelib.engine.pool_driver`).

Options: ``--master URL`` (Spark master; default: the session's config, then ``SPARKGATE_SPARK_MASTER``),
``--env KEY=VALUE`` (repeatable; set before anything reads the environment, used by EmrRunner),
``--doorbell`` (the runner rings the driver, SIGUSR1, whenever it queues a Job: ``LocalRunner``).
"""

from __future__ import annotations

import argparse
import os
import sys


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The engine's command line."""
    parser = argparse.ArgumentParser(prog="python -m chalicelib.engine")
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode in ("session", "batch", "pool"):
        cmd = sub.add_parser(mode)
        if mode == "session":
            cmd.add_argument("--session-id", required=True)
            cmd.add_argument("--generation", type=int, required=True)
        elif mode == "pool":
            cmd.add_argument("--pool-id", required=True)
        else:
            cmd.add_argument("--exec-id", required=True)
        cmd.add_argument("--master", default=None)
        cmd.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
        cmd.add_argument("--doorbell", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the engine in the requested mode; the exit code is 0 unless the driver itself failed."""
    args = parse(argv)
    for pair in args.env:
        key, _, value = pair.partition("=")
        os.environ[key] = value
    from chalicelib.engine import supervisor as driver

    driver.install_signal_handlers()
    if args.doorbell:
        driver.rely_on_doorbell()
    if args.mode == "pool":
        from chalicelib.engine.pool_driver import serve_pool

        reason = serve_pool(args.pool_id)
        print(f"sparkgate engine: pool driver {args.pool_id} stopped ({reason})", flush=True)
        return 0 if reason != "error" else 1
    if args.mode == "session":
        reason = driver.SessionDriver(args.session_id, args.generation, master=args.master).serve()
        print(f"sparkgate engine: session {args.session_id} g{args.generation} stopped ({reason})", flush=True)
        return 0 if reason != "error" else 1
    status = driver.run_batch(args.exec_id, master=args.master)
    print(f"sparkgate engine: batch {args.exec_id} ended {status}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
