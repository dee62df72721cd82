"""``make run``: the local stack on loopback.

One process tree: the embedded AWS (moto) with the table and bucket restored from the state
directory, the Chalice app's HTTP routes, the WebSocket gateway (``ws://host:8001``) with its
``@connections`` API, the stream pump that feeds the table's stream to ``on_dynamodb_record``, and
the schedule timer. Ctrl-C saves state and stops.

Isolation from the users' code (which may run on this machine and reach loopback):

- the embedded AWS and the ``@connections`` API answer only requests SigV4-signed with the
  platform credential, generated afresh at every start, exported as ``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY`` to the stack's environment (so the engine supervisors it starts inherit
  it) and written to ``<state dir>/aws-credentials`` (0600) for operator tools of the same uid;
- the state directory is 0700 and every file in it 0600 (tightened at start);
- ``SPARKGATE_ADMIN_PASSWORD`` leaves the environment once the first admin is seeded;
- each HTTP request runs with its own ``current_request`` (chalice's app holds one per thread).
"""

from __future__ import annotations

import argparse
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from chalice.local import ChaliceRequestHandler, ThreadedHTTPServer

from chalicelib.local.ws_gateway import LISTEN_BACKLOG

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_ADMIN_USER = "admin"
DEFAULT_ADMIN_PASSWORD = "sparkgate-admin"
#: a snapshot (which empties the write-ahead log) at most this often, when anything was written
SNAPSHOT_SECONDS = float(os.environ.get("SPARKGATE_SNAPSHOT_SECONDS", "60"))
SNAPSHOT_CHECK_SECONDS = 2.0
#: ... and sooner once the current log holds this many bytes
WAL_MAX_BYTES = 64 * 1024 * 1024


class _NoDelayHandler(ChaliceRequestHandler):  # type: ignore[misc]
    """Chalice's handler with Nagle off: it writes headers and body separately, and Nagle
    holding the body until the client's delayed ACK of the headers adds ~40 ms per request."""

    disable_nagle_algorithm = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """The access line without the query string (a URL may carry a token or a path)."""
        self.log_message('"%s %s" %s %s', self.command, self.path.split("?", 1)[0], code, size)

    def __getattr__(self, name: str) -> Any:
        # http.server answers a method it has no ``do_<METHOD>`` for with a 501 HTML page; API
        # Gateway answers in JSON: every other method (TRACE, CONNECT, BREW...) gets a JSON 405
        if name.startswith("do_"):
            return self._method_not_allowed
        raise AttributeError(name)

    def _method_not_allowed(self) -> None:
        length = self.headers.get("content-length", "0")
        if length.isascii() and length.isdigit() and 0 < int(length) <= 1024 * 1024:
            self.rfile.read(int(length))
        else:
            self.close_connection = True
        status, body = method_not_allowed(self.command, self.path)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Allow", "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def method_not_allowed(method: str, path: str) -> tuple[int, bytes]:
    """405 and a body in the envelope of the surface ``path`` belongs to."""
    from chalicelib.dialects import LinkisDialect, WorksDialect, json_response
    from chalicelib.errors import BadRequest

    class MethodNotAllowed(BadRequest):
        http_status = 405
        code = 405100

    route = path.split("?", 1)[0]
    err = MethodNotAllowed(f"method {method[:32]!r} is not allowed")
    if route.startswith("/api/rest_j/"):
        body = LinkisDialect().error(err, route).body
    elif route.startswith("/api/v1/"):
        body = WorksDialect().error(err, route).body
    else:
        # the geo/token envelope, which otherwise answers every refusal as 400
        body = json_response({"status": "error", "code": 405, "message": err.message}).body
    return 405, str(body).encode()


class _BackloggedServer(ThreadedHTTPServer):  # type: ignore[misc]
    """Chalice's threaded server with a listen backlog of 128 (socketserver's 5 resets bursts of clients)."""

    request_queue_size = LISTEN_BACKLOG


def secure_state_dir(state_dir: Path) -> None:
    """Create ``state_dir`` mode 0700 and take group/other permissions off everything already in it.

    Symbolic links are neither followed nor changed (``chmod`` of a link would change its target).
    """
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    for root, dirs, files in os.walk(state_dir):
        for name in [*dirs, *files]:
            path = os.path.join(root, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode) or not stat.S_IMODE(info.st_mode) & 0o077:
                continue
            os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this uid only (0600), replacing it atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def per_thread_requests(app: Any) -> Any:
    """Give ``app`` one ``current_request`` (and ``lambda_context``) per thread; answers ``app``.

    A Chalice app keeps the request being served in a plain attribute, which is right for Lambda
    (one request per process at a time) and wrong for a threaded local server: every thread would
    read whichever request was set last, and run with another request's token and body. chalice's
    own ``create_local_server`` swaps the app's class for ``LocalChalice`` (a thread-local
    ``current_request``) for the same reason; this does the same for the server the stack builds.
    """
    from chalice.local import LocalChalice

    if isinstance(app, LocalChalice):
        return app
    base = type(app)
    app.__class__ = type(f"PerThread{base.__name__}", (_PerThreadRequest, LocalChalice, base), {})
    return app


class _PerThreadRequest:
    """``current_request`` and ``lambda_context`` in a ``threading.local`` of the app (None until set)."""

    def _local(self) -> threading.local:
        local = self.__dict__.get("_sparkgate_thread_state")
        if local is None:
            local = self.__dict__.setdefault("_sparkgate_thread_state", threading.local())
        return local  # type: ignore[no-any-return]

    @property
    def current_request(self) -> Any:
        return getattr(self._local(), "current_request", None)

    @current_request.setter
    def current_request(self, value: Any) -> None:
        self._local().current_request = value

    @property
    def lambda_context(self) -> Any:
        return getattr(self._local(), "lambda_context", None)

    @lambda_context.setter
    def lambda_context(self, value: Any) -> None:
        self._local().lambda_context = value


def isolation_mode() -> str:
    """How users' code is isolated, as the engine's sandbox reports it (``unknown`` until it exists)."""
    try:
        from chalicelib.engine.sandbox import isolation_mode as sandbox_mode  # type: ignore[attr-defined,unused-ignore]
    except (ImportError, AttributeError):
        return "unknown (chalicelib.engine.sandbox is not available): users are NOT isolated"
    try:
        return str(sandbox_mode())
    except Exception as err:  # the banner must not stop the stack
        return f"unknown ({err!r}): users are NOT isolated"


class LocalStack:
    """Starts and stops every part of the local stack."""

    def __init__(self, host: str, http_port: int, ws_port: int, state_dir: Path, ws_admin_port: int = 0) -> None:
        self.host, self.http_port, self.ws_port = host, http_port, ws_port
        self.ws_admin_port = ws_admin_port
        self.ws_url = ""
        self.ws_endpoint = ""
        self.state_dir = state_dir.resolve()
        self._stop = threading.Event()
        self._stoppers: list[Callable[[], None]] = []
        self.http_url = ""
        self._save_lock = threading.Lock()
        self._saved_at = time.monotonic()

    def start(self) -> None:
        """Bring everything up; returns once the HTTP server listens."""
        os.environ["SPARKGATE_STAGE"] = "local"
        os.environ["SPARKGATE_STATE_DIR"] = str(self.state_dir)
        secure_state_dir(self.state_dir)
        (self.state_dir / "drivers").mkdir(mode=0o700, exist_ok=True)
        self._start_cluster()
        from chalicelib.local.aws import start_embedded_aws
        from chalicelib.local.credentials import CREDENTIALS_FILE, ENDPOINT_FILE, Credentials
        from chalicelib.local.journal import Journal

        self.credentials = Credentials.generate()
        self.credentials.save(self.state_dir / CREDENTIALS_FILE)
        self.journal = Journal(self.state_dir / "aws" / "wal")
        moto, endpoint = start_embedded_aws(
            int(os.environ.get("SPARKGATE_AWS_PORT", "0")), self.credentials, self.journal
        )
        self.moto = moto
        self._stoppers.append(moto.stop)
        self._stoppers.append(self.journal.close)
        write_private(self.state_dir / ENDPOINT_FILE, endpoint)

        from chalicelib.config import settings
        from chalicelib.store.provision import ensure_table_and_bucket
        from chalicelib.store.snapshot import Snapshotter
        from chalicelib.users import ensure_user

        cfg = settings()
        ensure_table_and_bucket(cfg)
        self.snapshots = Snapshotter(cfg, cut=self._cut)
        restored = self.snapshots.restore()
        logs = [g for g in self.journal.generations() if g >= self.snapshots.wal_generation]
        applied, refused = moto.replay(logs)
        self.journal.open(max([self.snapshots.wal_generation, *logs]) + 1)  # from here on every write is logged
        self._save()  # the replayed state becomes the new snapshot; the logs it holds go
        print(
            f"sparkgate: state in {self.state_dir} ({restored} items restored, "
            f"{applied} logged writes replayed, {refused} already applied)",
            flush=True,
        )
        admin = os.environ.get("SPARKGATE_ADMIN_USER", DEFAULT_ADMIN_USER)
        password = os.environ.get("SPARKGATE_ADMIN_PASSWORD", DEFAULT_ADMIN_PASSWORD)
        if ensure_user(admin, password, admin=True):
            print(f"sparkgate: created admin user {admin!r}", flush=True)
        os.environ.pop("SPARKGATE_ADMIN_PASSWORD", None)  # nothing started from here on inherits it

        self._start_http()
        self._start_background()
        threading.Thread(target=self._snapshot_loop, name="snapshot", daemon=True).start()

    def _start_cluster(self) -> None:
        """``SPARKGATE_CLUSTER=standalone``: a Spark standalone master and workers that every driver uses
        (``chalicelib/local/cluster.py``); the cluster's master URL is also an allowed geo ``master-addr``."""
        from chalicelib.local import cluster

        if not cluster.wanted():
            return
        self.cluster = cluster.StandaloneCluster(self.state_dir)
        self._stoppers.append(self.cluster.stop)
        try:
            url = self.cluster.start()
        except Exception:
            self.cluster.stop()
            raise
        from chalicelib.masters import allowlist

        os.environ["SPARKGATE_MASTER_ALLOWLIST"] = ",".join(dict.fromkeys([*allowlist(), url]))
        print(self.cluster.describe(), flush=True)

    def _start_http(self) -> None:
        from chalice.cli.factory import CLIFactory
        from chalice.local import LocalDevServer

        factory = CLIFactory(str(PROJECT_DIR), environ=dict(os.environ))
        config = factory.create_config_obj(chalice_stage_name="local")
        for key, value in config.environment_variables.items():
            os.environ.setdefault(key, value)
        app = per_thread_requests(factory.load_chalice_app(config.environment_variables))
        server = LocalDevServer(
            app, config, self.host, self.http_port, handler_cls=_NoDelayHandler, server_cls=_BackloggedServer
        )
        self.http_port = server.server.server_address[1]
        self.http_url = f"http://{self.host}:{self.http_port}"
        # the console's own origin may call the API cross-origin too (the cloud's default allows none)
        os.environ.setdefault("SPARKGATE_CORS_ORIGINS", f"{self.http_url},http://localhost:{self.http_port}")
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        self._stoppers.insert(0, server.shutdown)
        self.app = app

    def _start_background(self) -> None:
        """The WebSocket gateway (+ ``@connections``), the stream pump and the schedule timer."""
        from chalicelib.config import settings
        from chalicelib.local.stream_pump import StreamPump
        from chalicelib.local.ws_gateway import (
            IDLE_SECONDS,
            MAX_SECONDS,
            WsGateway,
            resolve_stream_handler,
            resolve_ws_handlers,
        )

        gateway = WsGateway(
            resolve_ws_handlers(self.app),
            self.host,
            self.ws_port,
            self.ws_admin_port,
            idle_seconds=float(os.environ.get("SPARKGATE_WS_IDLE_SECONDS", IDLE_SECONDS)),
            max_seconds=float(os.environ.get("SPARKGATE_WS_MAX_SECONDS", MAX_SECONDS)),
            credentials=self.credentials,
        )
        gateway.start()
        self._stoppers.insert(0, gateway.stop)
        self.gateway = gateway
        self.ws_port, self.ws_admin_port = gateway.port, gateway.admin_port
        self.ws_url, self.ws_endpoint = gateway.ws_url, gateway.endpoint
        os.environ["SPARKGATE_WS_ENDPOINT"] = gateway.endpoint  # where the push code posts
        write_private(self.state_dir / "ws-url", gateway.ws_url)
        os.environ.setdefault("SPARKGATE_CONSOLE_WS_URL", gateway.ws_url)  # where the console's page connects

        from chalicelib.local.aws import TABLE_WRITTEN, read_stream_records, trim_consumed_stream

        handler = resolve_stream_handler(self.app)
        pump = StreamPump(
            handler, settings().table_name, trim=trim_consumed_stream, wake=TABLE_WRITTEN, read=read_stream_records
        )
        pump.start()
        if not pump.ready.wait(15):
            print("sparkgate: the stream pump is not reading the stream yet", file=sys.stderr, flush=True)
        self._stoppers.insert(0, pump.stop)
        self.pump = pump

        from chalicelib import pool

        pool.refill_quietly()  # warm drivers start in the background (SPARKGATE_POOL_SIZE)

        try:
            from chalicelib.local.monitor import ScheduleMonitor
        except ImportError:  # the schedule timer is optional
            return
        monitor = ScheduleMonitor()
        monitor.start()
        self._stoppers.insert(0, monitor.stop)
        self.monitor = monitor

    def banner_lines(self) -> list[str]:
        """Extra lines describing what the background services listen on."""
        from chalicelib.config import settings

        return [
            f"sparkgate: WebSocket on {self.ws_url}/?token=<jwt>",
            f"sparkgate: @connections API on {self.ws_endpoint} (SPARKGATE_WS_ENDPOINT)",
            f"sparkgate: isolation: {isolation_mode()}",
            f"sparkgate: warm pool: {settings().pool_size} fresh + {settings().pool_per_user} per user, "
            f"at most {settings().pool_max} (SPARKGATE_POOL_SIZE, SPARKGATE_POOL_PER_USER, SPARKGATE_POOL_MAX)",
            f"sparkgate: data roots: {':'.join(settings().data_roots) or '(none)'} (SPARKGATE_DATA_ROOTS)",
        ]

    def _cut(self) -> tuple[list[dict[str, Any]], int]:
        """The table and the log generation that starts right after it, taken while no write is applied."""
        from chalicelib.config import settings
        from chalicelib.local.aws import dump_table, write_locks

        with write_locks():
            generation = self.journal.rotate()
            items = dump_table(settings().table_name)
        return items, generation

    def _save(self) -> None:
        """Snapshot, then delete the logs the snapshot holds."""
        with self._save_lock:
            self.snapshots.save()
            self.journal.drop_before(self.snapshots.wal_generation)
            self._saved_at = time.monotonic()

    def _snapshot_loop(self) -> None:
        while not self._stop.wait(SNAPSHOT_CHECK_SECONDS):
            due = time.monotonic() - self._saved_at >= SNAPSHOT_SECONDS or self.journal.appended >= WAL_MAX_BYTES
            if not self.journal.appended or not due:
                continue
            try:
                self._save()
            except Exception as err:  # keep serving (the log holds every write); the next tick retries
                print(f"sparkgate: snapshot failed: {err}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        """Stop the engine drivers, save state, then stop every part, newest first (the embedded AWS last).

        Drivers go first: while they wind down they still write their last states to the embedded AWS.
        """
        self._stop.set()
        try:
            from chalicelib.runners.local import stop_children

            stopped = stop_children()
            if stopped:
                print(f"sparkgate: stopped {stopped} engine driver(s)", flush=True)
        except Exception as err:
            print(f"sparkgate: while stopping the drivers: {err}", file=sys.stderr, flush=True)
        try:
            self._save()
        finally:
            for stopper in self._stoppers:
                try:
                    stopper()
                except Exception as err:
                    print(f"sparkgate: while stopping: {err}", file=sys.stderr, flush=True)

    def wait(self) -> None:
        """Block until SIGINT/SIGTERM."""

        def handle(signum: int, frame: FrameType | None) -> None:
            self._stop.set()

        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGTERM, handle)
        while not self._stop.wait(0.5):
            pass


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``make run`` (``python -m chalicelib.local.stack``)."""
    parser = argparse.ArgumentParser(description="Run the sparkgate local stack on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=int(os.environ.get("SPARKGATE_HTTP_PORT", "8000")))
    parser.add_argument("--ws-port", type=int, default=int(os.environ.get("SPARKGATE_WS_PORT", "8001")))
    parser.add_argument(
        "--ws-admin-port",
        type=int,
        default=int(os.environ.get("SPARKGATE_WS_ADMIN_PORT", "0")),
        help="port of the local @connections API (0: any free port)",
    )
    parser.add_argument("--state-dir", default=os.environ.get("SPARKGATE_STATE_DIR", ".sparkgate"))
    args = parser.parse_args(argv)
    stack = LocalStack(args.host, args.http_port, args.ws_port, Path(args.state_dir), args.ws_admin_port)
    default_password = os.environ.get("SPARKGATE_ADMIN_PASSWORD", DEFAULT_ADMIN_PASSWORD) == DEFAULT_ADMIN_PASSWORD
    shown_password = DEFAULT_ADMIN_PASSWORD if default_password else "<SPARKGATE_ADMIN_PASSWORD>"
    stack.start()
    user = os.environ.get("SPARKGATE_ADMIN_USER", DEFAULT_ADMIN_USER)
    print(f"sparkgate: HTTP on {stack.http_url}", flush=True)
    print(f"sparkgate: console on {stack.http_url}/console/", flush=True)
    for line in stack.banner_lines():
        print(line, flush=True)
    print(
        "sparkgate: try\n"
        f"  curl -s -X POST {stack.http_url}/token -H 'Content-Type: application/json' "
        f'-d \'{{"username":"{user}","password":"{shown_password}"}}\'\n'
        "sparkgate: ready (Ctrl-C to stop)",
        flush=True,
    )
    stack.wait()
    print("sparkgate: stopping, state saved", flush=True)
    stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
