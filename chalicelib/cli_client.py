"""``sparkgate`` client commands (click): login, run, jobs, works. See ``chalicelib.cli``.

Only the standard library talks HTTP, so the command works with the run install (click comes with
chalice). The token is kept in ``$XDG_CONFIG_HOME/sparkgate/config.json`` (default ``~/.config``),
mode 0600 in a 0700 directory.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import click

LINKIS = "/api/rest_j/v1"
FINAL = ("Succeed", "Failed", "Cancelled", "Timeout")


def config_path() -> Path:
    """Where ``login`` keeps the URL and the token."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sparkgate" / "config.json"


def _load() -> dict[str, Any]:
    path = config_path()
    if not path.exists():
        raise click.ClickException("not logged in: run `sparkgate login --url URL --username NAME`")
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _save(config: dict[str, Any]) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(config, out)
    path.chmod(0o600)
    return path


class Api:
    """JSON over HTTP with the stored token."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    @classmethod
    def from_config(cls) -> Api:
        config = _load()
        return cls(config["url"], config.get("token"))

    def call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        """The parsed answer; :class:`click.ClickException` with the server's message on a refusal."""
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                raise click.ClickException(f"HTTP {err.code}") from None
            message = parsed.get("msg") or parsed.get("message") or raw.decode()[:200]
            raise click.ClickException(f"{message} (HTTP {err.code})") from None
        except urllib.error.URLError as err:
            raise click.ClickException(f"cannot reach {self.url}: {err.reason}") from None
        return json.loads(raw) if raw else None

    def linkis(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        """``data`` of a Linkis answer."""
        return self.call(method, LINKIS + path, body, query)["data"]


def _emit(value: Any, as_json: bool) -> None:
    if as_json or not isinstance(value, (list, dict)):
        click.echo(json.dumps(value, ensure_ascii=False, indent=None if as_json else 2))
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        columns = list(value[0])
        _table(columns, [[row.get(c) for c in columns] for row in value])
    else:
        click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _table(columns: list[str], rows: list[list[Any]]) -> None:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells if i < len(r)]) for i, c in enumerate(columns)]
    widths = [min(w, 60) for w in widths]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo("  ".join(v[:w].ljust(w) for v, w in zip(row, widths, strict=False)))


@click.group(help="sparkgate: submit Spark SQL/Python, follow Jobs, manage works.")
def client() -> None:
    """The command group."""


@client.command()
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="the gateway's URL")
@click.option("--ws-url", help="the WebSocket URL (default: the URL's host, port 8001 for 8000)")
@click.option("--username", prompt=True)
def login(url: str, ws_url: str | None, username: str) -> None:
    """Log in and keep the token (0600) in the user's config dir."""
    password = os.environ.get("SPARKGATE_PASSWORD") or click.prompt("password", hide_input=True)
    answer = Api(url).call("POST", "/token", {"username": username, "password": password})
    config = {"url": url, "username": username, "token": answer["data"]["token"], "ws_url": ws_url or ws_url_for(url)}
    path = _save(config)
    click.echo(f"logged in as {username}; token in {path}")


def _progress(api: Api, exec_id: str) -> float:
    data = api.linkis("GET", f"/entrance/{exec_id}/progress")
    return float(data.get("progress") or 0)


def follow(api: Api, exec_id: str, *, quiet: bool = False, interval: float = 0.5) -> str:
    """Follow a Job to its end: the log as it grows and a progress bar; its final status."""
    cursor = 1
    last = 0
    status = ""
    with click.progressbar(length=100, label=exec_id, file=sys.stderr, show_eta=False) as bar:
        while True:
            status = str(api.linkis("GET", f"/entrance/{exec_id}/status")["status"])
            log = api.linkis("GET", f"/entrance/{exec_id}/log", query={"fromLine": cursor, "size": -1})
            lines = log.get("log") or []
            text = lines[3] if isinstance(lines, list) and len(lines) > 3 else ""
            if text and not quiet:
                click.echo(text, err=True)
            cursor = int(log.get("fromLine") or cursor)
            done = round(_progress(api, exec_id) * 100)
            if done > last:
                bar.update(done - last)
                last = done
            if status in FINAL:
                if status == "Succeed" and last < 100:
                    bar.update(100 - last)
                return status
            time.sleep(interval)


def ws_url_for(url: str) -> str:
    """The WebSocket URL beside an HTTP one: the local stack's default port 8001 next to 8000."""
    parts = urllib.parse.urlsplit(url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    host = parts.netloc.replace(":8000", ":8001") if parts.netloc.endswith(":8000") else parts.netloc
    return f"{scheme}://{host}{parts.path}"


def follow_ws(api: Api, ws_url: str, exec_id: str, *, quiet: bool = False, timeout: float = 3600) -> str | None:
    """Follow a Job over the WebSocket (subscribe, then pushes); ``None`` when the socket is unusable
    (the caller falls back to HTTP). Log lines written before the subscription come from HTTP first."""
    try:
        from websockets.sync.client import connect
    except ImportError:
        return None
    try:
        socket = connect(ws_url, subprotocols=["sparkgate", f"token.{api.token}"], open_timeout=10)  # type: ignore[list-item]
    except Exception:
        return None
    base = f"{LINKIS}/entrance/{exec_id}"
    with socket, click.progressbar(length=100, label=exec_id, file=sys.stderr, show_eta=False) as bar:
        socket.send(json.dumps({"method": f"{base}/subscribe", "data": {}, "websocketTag": "cli"}))
        first = api.linkis("GET", f"/entrance/{exec_id}/log", query={"fromLine": 1, "size": -1})
        lines = first.get("log") or []
        if len(lines) > 3 and lines[3] and not quiet:
            click.echo(lines[3], err=True)
        cursor = int(first.get("fromLine") or 1)
        shown = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                frame = json.loads(socket.recv(timeout=30))
            except TimeoutError:
                status = str(api.linkis("GET", f"/entrance/{exec_id}/status")["status"])  # a quiet Job
                if status in FINAL:
                    return status
                continue
            except Exception:
                return None
            data = frame.get("data") or {}
            if frame.get("status") != 0 or data.get("execID") != exec_id:
                continue
            method = str(frame.get("method", ""))
            if method.endswith("/log"):
                after = int(data.get("fromLine") or 0)
                log = data.get("log") or []
                if after > cursor and len(log) > 3 and log[3] and not quiet:
                    click.echo(log[3], err=True)
                cursor = max(cursor, after)
            elif method.endswith("/progress"):
                done = round(float(data.get("progress") or 0) * 100)
                if done > shown:
                    bar.update(done - shown)
                    shown = done
            elif data.get("status") in FINAL:
                if data["status"] == "Succeed" and shown < 100:
                    bar.update(100 - shown)
                return str(data["status"])
    return None


def _result_sets(api: Api, exec_id: str) -> list[dict[str, Any]]:
    status = api.linkis("GET", f"/entrance/{exec_id}/status")
    task = api.linkis("GET", f"/jobhistory/{status['taskID']}/get")["task"]
    location = task.get("resultLocation")
    if not location:
        return []
    tree = api.linkis("GET", "/filesystem/getDirFileTrees", query={"path": location})["dirFileTrees"]
    sets = []
    for child in tree.get("children") or []:
        page = api.linkis("GET", "/filesystem/openFile", query={"path": child["path"], "pageSize": 50000})
        columns = (
            [m.get("columnName") for m in page.get("metadata") or []] if isinstance(page.get("metadata"), list) else []
        )
        sets.append({"columns": columns, "rows": page.get("fileContent") or []})
    return sets


def _write_results(sets: list[dict[str, Any]], output: str | None, as_json: bool) -> None:
    if output:
        path = Path(output)
        if path.suffix == ".json":
            path.write_text(json.dumps(sets, ensure_ascii=False))
        else:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            for result in sets:
                writer.writerow(result["columns"])
                writer.writerows(result["rows"])
            path.write_text(buffer.getvalue())
        click.echo(f"wrote {path}", err=True)
        return
    if as_json:
        click.echo(json.dumps(sets, ensure_ascii=False))
        return
    for result in sets:
        if result["columns"]:
            _table(result["columns"], result["rows"])
        else:
            for row in result["rows"]:
                click.echo(" ".join(str(v) for v in row))


@client.command()
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-e", "--code", help="the code inline instead of FILE")
@click.option("--type", "run_type", type=click.Choice(["sql", "python"]), help="default: from FILE's suffix, else sql")
@click.option("-o", "--output", help="write the result sets to out.csv or out.json")
@click.option("--json", "as_json", is_flag=True, help="results as JSON")
@click.option("--quiet", is_flag=True, help="do not print the log")
@click.option("--http", "http_only", is_flag=True, help="follow over HTTP polling, not the WebSocket")
def run(
    file: str | None,
    code: str | None,
    run_type: str | None,
    output: str | None,
    as_json: bool,
    quiet: bool,
    http_only: bool,
) -> None:
    """Submit code, follow its log and progress, print its results; exit 1 if it fails, kill it on Ctrl-C."""
    if (file is None) == (code is None):
        raise click.UsageError("give FILE or -e CODE")
    source = Path(file).read_text() if file else str(code)
    kind = run_type or ("python" if file and file.endswith(".py") else "sql")
    api = Api.from_config()
    body: dict[str, Any] = {"executeApplicationName": "spark", "executionCode": source, "runType": kind, "params": {}}
    body["source"] = {"scriptPath": file or "cli"}
    job = api.linkis("POST", "/entrance/execute", body)
    exec_id = job["execID"]
    click.echo(f"submitted {exec_id} (taskID {job['taskID']})", err=True)
    try:
        status = None
        if not http_only:
            status = follow_ws(api, _load().get("ws_url") or ws_url_for(api.url), exec_id, quiet=quiet)
            if status is None:
                click.echo("WebSocket unavailable: following over HTTP", err=True)
        status = status or follow(api, exec_id, quiet=quiet)
    except KeyboardInterrupt:
        api.linkis("GET", f"/entrance/{exec_id}/kill")
        click.echo(f"killed {exec_id}", err=True)
        sys.exit(130)
    click.echo(f"{exec_id}: {status}", err=True)
    if status != "Succeed":
        sys.exit(1)
    _write_results(_result_sets(api, exec_id), output, as_json)


@client.group()
def jobs() -> None:
    """A Job's status, log, kill and result."""


@jobs.command("status")
@click.argument("exec_id")
@click.option("--json", "as_json", is_flag=True)
def job_status(exec_id: str, as_json: bool) -> None:
    """Status and progress."""
    api = Api.from_config()
    data = api.linkis("GET", f"/entrance/{exec_id}/status")
    data["progress"] = _progress(api, exec_id)
    _emit(data, as_json)


@jobs.command("log")
@click.argument("exec_id")
@click.option("--follow", "follow_log", is_flag=True, help="until the Job ends")
def job_log(exec_id: str, follow_log: bool) -> None:
    """The log (all levels)."""
    api = Api.from_config()
    if follow_log:
        follow(api, exec_id)
        return
    log = api.linkis("GET", f"/entrance/{exec_id}/log", query={"fromLine": 1, "size": -1})
    lines = log.get("log") or []
    click.echo(lines[3] if isinstance(lines, list) and len(lines) > 3 else lines)


@jobs.command("kill")
@click.argument("exec_id")
def job_kill(exec_id: str) -> None:
    """Cancel the Job."""
    _emit(Api.from_config().linkis("GET", f"/entrance/{exec_id}/kill"), False)


@jobs.command("result")
@click.argument("exec_id")
@click.option("-o", "--output")
@click.option("--json", "as_json", is_flag=True)
def job_result(exec_id: str, output: str | None, as_json: bool) -> None:
    """The result sets as tables, JSON or a CSV/JSON file."""
    _write_results(_result_sets(Api.from_config(), exec_id), output, as_json)


@client.group()
def works() -> None:
    """Works (spec 003)."""


@works.command("list")
@click.option("--json", "as_json", is_flag=True)
def works_list(as_json: bool) -> None:
    """Your works, newest first."""
    rows = Api.from_config().call("GET", "/api/v1/works", query={"limit": 100})["data"]
    if as_json:
        _emit(rows, True)
    else:
        _table(
            ["work_id", "name", "category", "run_frequency"],
            [[w[k] for k in ("work_id", "name", "category", "run_frequency")] for w in rows],
        )


@works.command("get")
@click.argument("work_id")
def works_get(work_id: str) -> None:
    """One work (JSON)."""
    _emit(Api.from_config().call("GET", f"/api/v1/works/{work_id}")["data"], True)


@works.command("create")
@click.option("--name", required=True)
@click.option("--description", default="")
@click.option("--type", "work_type", type=click.Choice(["BATCH", "STREAMING"]), default="BATCH")
@click.option("--category", default="SPARK_SQL")
@click.option("--work-directory")
@click.option("--run-frequency", type=click.Choice(["once", "hourly", "daily", "weekly"]), default="once")
@click.option("--paused", is_flag=True)
def works_create(
    name: str,
    description: str,
    work_type: str,
    category: str,
    work_directory: str | None,
    run_frequency: str,
    paused: bool,
) -> None:
    """Create a work (JSON out)."""
    body: dict[str, Any] = {"name": name, "description": description, "type": work_type, "category": category}
    body.update({"run_frequency": run_frequency, "paused": paused})
    if work_directory:
        body["work_directory"] = work_directory
    _emit(Api.from_config().call("POST", "/api/v1/works", body)["data"], True)


@works.command("start")
@click.argument("work_id")
def works_start(work_id: str) -> None:
    """Start a run now (the task, JSON)."""
    _emit(Api.from_config().call("POST", f"/api/v1/works/{work_id}/tasks", {})["data"], True)


@works.command("update")
@click.argument("work_id")
@click.argument("changes")
def works_update(work_id: str, changes: str) -> None:
    """Partial update from a JSON object (``'{"paused": false}'``)."""
    body = _geo_body(changes)
    _emit(Api.from_config().call("PATCH", f"/api/v1/works/{work_id}", body)["data"], True)


@works.command("delete")
@click.argument("work_id")
def works_delete(work_id: str) -> None:
    """Soft-delete a work."""
    Api.from_config().call("DELETE", f"/api/v1/works/{work_id}")
    click.echo(f"deleted {work_id}", err=True)


@client.group()
def tasks() -> None:
    """Runs of works."""


@tasks.command("list")
@click.argument("work_id")
@click.option("--json", "as_json", is_flag=True)
def tasks_list(work_id: str, as_json: bool) -> None:
    """A work's tasks, newest first."""
    _emit(Api.from_config().call("GET", f"/api/v1/works/{work_id}/tasks", query={"limit": 100})["data"], as_json)


@tasks.command("get")
@click.argument("task_id")
def tasks_get(task_id: str) -> None:
    """One task (JSON)."""
    _emit(Api.from_config().call("GET", f"/api/v1/tasks/{task_id}")["data"], True)


@tasks.command("cancel")
@click.argument("task_id")
def tasks_cancel(task_id: str) -> None:
    """Cancel a task."""
    _emit(Api.from_config().call("POST", f"/api/v1/tasks/{task_id}/cancel")["data"], True)


@tasks.command("retry")
@click.argument("task_id")
def tasks_retry(task_id: str) -> None:
    """Retry a failed, cancelled or timed-out task."""
    _emit(Api.from_config().call("POST", f"/api/v1/tasks/{task_id}/retry")["data"], True)


@jobs.command("list")
@click.option("--json", "as_json", is_flag=True)
def jobs_list(as_json: bool) -> None:
    """Your Jobs, newest first (jobhistory/list)."""
    rows = Api.from_config().linkis("GET", "/jobhistory/list", query={"pageSize": 50})["tasks"]
    if as_json:
        _emit(rows, True)
    else:
        keys = ("taskID", "execId", "status", "runType")
        _table(list(keys), [[row.get(k) for k in keys] for row in rows])


@client.group()
def geo() -> None:
    """The geo surface (Arctern's routes): BODY is the route's JSON body, as docs/geo.md shows it."""


def geo_call(api: Api, route: str, body: dict[str, Any], *, wait: float = 600) -> dict[str, Any]:
    """POST a geo route; a 202 (the session's driver is starting, or a long Job) is asked again."""
    deadline = time.monotonic() + wait
    while True:
        answer: dict[str, Any] = api.call("POST", route, body)
        if answer.get("code") != 202 or time.monotonic() > deadline:
            return answer
        click.echo(answer.get("message", "pending"), err=True)
        time.sleep(2)


def _geo_body(body: str) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError as err:
        raise click.BadParameter(f"BODY is not JSON: {err}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("BODY must be a JSON object")
    return parsed


for _route, _help in (
    ("scope", "Create a scope (POST /scope)."),
    ("session", "Create a Spark session in a scope (POST /session)."),
    ("load", "Load files as tables (POST /loadfile)."),
    ("query", "Rows of a query (POST /query)."),
):

    def _command(body: str, route: str = _route) -> None:
        target = {"load": "/loadfile"}.get(route, f"/{route}")
        _emit(geo_call(Api.from_config(), target, _geo_body(body)), True)

    geo.command(_route, help=_help)(click.argument("body", default="{}")(_command))


@geo.command("map")
@click.option(
    "--kind",
    type=click.Choice(
        [
            "pointmap",
            "heatmap",
            "choropleth",
            "choroplethmap",
            "weighted",
            "weighted_pointmap",
            "icon_viz",
            "fishnetmap",
        ]
    ),
    default="pointmap",
    show_default=True,
)
@click.option("-o", "--output", default="map.png", show_default=True)
@click.argument("body")
def geo_map(kind: str, output: str, body: str) -> None:
    """Draw a map (POST /<kind>) and write the PNG."""
    answer = geo_call(Api.from_config(), f"/{kind}", _geo_body(body))
    if answer.get("code") != 200 or not answer.get("result"):
        raise click.ClickException(str(answer.get("message") or answer))
    import base64

    Path(output).write_bytes(base64.b64decode(answer["result"]))
    click.echo(f"wrote {output}", err=True)


@client.group()
def users() -> None:
    """User admin over HTTP (admins; a user may read their own record and change their password)."""


@users.command("list")
@click.option("--json", "as_json", is_flag=True)
def users_list(as_json: bool) -> None:
    """Every user (admins)."""
    _emit(Api.from_config().call("GET", "/api/v1/users", query={"limit": 100})["data"], as_json)


@users.command("get")
@click.argument("username")
def users_get(username: str) -> None:
    """One user (JSON)."""
    _emit(Api.from_config().call("GET", f"/api/v1/users/{username}")["data"], True)


@users.command("create")
@click.argument("username")
@click.option("--admin", is_flag=True)
def users_create(username: str, admin: bool) -> None:
    """Create a user; the password from SPARKGATE_NEW_PASSWORD or prompted."""
    password = os.environ.get("SPARKGATE_NEW_PASSWORD") or click.prompt("new password", hide_input=True)
    body = {"username": username, "password": password, "is_admin": admin}
    _emit(Api.from_config().call("POST", "/api/v1/users", body)["data"], True)


@users.command("update")
@click.argument("username")
@click.argument("changes")
def users_update(username: str, changes: str) -> None:
    """``'{"disabled": true}'`` and the like (admins)."""
    _emit(Api.from_config().call("PATCH", f"/api/v1/users/{username}", _geo_body(changes))["data"], True)


@users.command("delete")
@click.argument("username")
def users_delete(username: str) -> None:
    """Delete a user (admins)."""
    Api.from_config().call("DELETE", f"/api/v1/users/{username}")
    click.echo(f"deleted {username}", err=True)
