"""Linkis-compatible entrance API: ``/api/rest_j/v1/...`` (envelope ``{method, status, message, data}``)."""

from __future__ import annotations

from chalice import Response

from chalicelib import entrance, jobs
from chalicelib.api.routing import SESSION_COOKIE, Call, Surface
from chalicelib.api.token import credentials
from chalicelib.config import settings
from chalicelib.dialects import LinkisDialect
from chalicelib.tokens import revoke_token, token_from_headers
from chalicelib.users import is_admin
from chalicelib.users import login as check_login

BASE = "/api/rest_j/v1"
linkis = LinkisDialect()
surface = Surface(__name__, linkis, linkis_auth=True)
blueprint = surface.blueprint


def _ok(call: Call, data: object, message: str = "OK") -> Response:
    return linkis.ok(call.request.context.get("path", ""), data, message)


@surface.route(f"{BASE}/user/login", methods=["POST"], public=True)
def user_login(call: Call) -> Response:
    """Log in with ``{userName, password}``; sets the session cookie later calls may rely on.

    The cookie is ``SameSite=Strict``: no cross-site request (a link, a form, an image) carries it,
    so the state-changing ``GET .../kill`` Linkis clients call cannot be forged from another site.
    """
    body = call.body()
    principal, token, ttl = check_login(*credentials(body, "userName", "password"), address=call.source_ip)
    secure = "" if settings().is_local else "; Secure"
    cookie = f"{SESSION_COOKIE}={token}; Path=/; Max-Age={ttl}; HttpOnly; SameSite=Strict{secure}"
    data = {
        "userName": principal.username,
        "userId": principal.user_id,
        "isAdmin": is_admin(principal),
        "token": token,
    }
    return linkis.ok(call.request.context.get("path", ""), data, "login successful", headers={"Set-Cookie": cookie})


@surface.route(f"{BASE}/user/logout", methods=["GET", "POST"], public=True)
def user_logout(call: Call) -> Response:
    """Revoke this session's token (the cookie's, or the ``Authorization`` one) and clear the cookie."""
    token = token_from_headers({k.lower(): v for k, v in call.request.headers.items()}, SESSION_COOKIE)
    if token:
        revoke_token(token)
    cookie = f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
    return linkis.ok(call.request.context.get("path", ""), {}, "logout successful", headers={"Set-Cookie": cookie})


@surface.route(f"{BASE}/entrance/execute", methods=["POST"])
def execute(call: Call) -> Response:
    """Submit code (spec 000 body)."""
    return _ok(call, entrance.execute(call.user, call.body()), "execute succeeded")


@surface.route(f"{BASE}/entrance/submit", methods=["POST"])
def submit(call: Call) -> Response:
    """Submit code (Linkis 1.x body with labels)."""
    return _ok(call, entrance.submit(call.user, call.body()), "submit succeeded")


@surface.route(f"{BASE}/entrance/{{exec_id}}/status", methods=["GET"])
def status(call: Call, exec_id: str) -> Response:
    """``{execID, taskID, status}``."""
    return _ok(call, entrance.status(jobs.owned_job(call.user, exec_id)))


@surface.route(f"{BASE}/entrance/{{exec_id}}/progress", methods=["GET"])
def progress(call: Call, exec_id: str) -> Response:
    """``{execID, progress, progressInfo}``."""
    return _ok(call, entrance.progress(jobs.owned_job(call.user, exec_id)))


@surface.route(f"{BASE}/entrance/{{exec_id}}/log", methods=["GET"])
def log(call: Call, exec_id: str) -> Response:
    """Log lines from ``fromLine``; answers the cursor to resume from."""
    job = jobs.owned_job(call.user, exec_id)
    query = call.query
    return _ok(call, entrance.log(job, query.get("fromLine"), query.get("size"), query.get("distinctLevel")))


@surface.route(f"{BASE}/entrance/{{exec_id}}/kill", methods=["GET", "POST"])
def kill(call: Call, exec_id: str) -> Response:
    """Cancel one Job (GET as Linkis serves it, POST as its docs say)."""
    return _ok(call, entrance.kill(jobs.owned_job(call.user, exec_id)), "kill requested")


@surface.route(f"{BASE}/entrance/{{exec_id}}/killJobs", methods=["POST"])
def kill_jobs(call: Call, exec_id: str) -> Response:
    """Cancel several Jobs ``{idList, taskIDList}``."""
    return _ok(call, {"messages": entrance.kill_jobs(call.user, call.body())}, "kill requested")


@surface.route(f"{BASE}/jobhistory/{{task_id}}/get", methods=["GET"])
def job_history(call: Call, task_id: str) -> Response:
    """A Job by numeric taskID, also after it finished."""
    return _ok(call, {"task": entrance.history(jobs.owned_job_by_task(call.user, task_id))})


@surface.route(f"{BASE}/filesystem/getDirFileTrees", methods=["GET"])
def dir_file_trees(call: Call) -> Response:
    """The result sets under a Job's ``resultLocation``."""
    return _ok(call, entrance.dir_file_trees(call.user, call.query.get("path")))


@surface.route(f"{BASE}/filesystem/openFile", methods=["GET"])
def open_file(call: Call) -> Response:
    """A page of one result set."""
    query = call.query
    return _ok(
        call,
        entrance.open_file(call.user, query.get("path"), query.get("page"), query.get("pageSize"), query.get("typed")),
    )


@surface.route(f"{BASE}/jobhistory/list", methods=["GET"])
def job_history_list(call: Call) -> Response:
    """The caller's Jobs, newest first, filtered and paged as Linkis's ``QueryRestfulApi.list``."""
    return _ok(call, entrance.history_list(call.user, call.query))


@surface.route(f"{BASE}/filesystem/openLog", methods=["GET"])
def open_log(call: Call) -> Response:
    """The whole log of a Job by its ``logPath``: ``{log: [error, warn, info, all]}``."""
    return _ok(call, entrance.open_log(call.user, call.query.get("path")))


@surface.route(f"{BASE}/filesystem/getUserRootPath", methods=["GET"])
def user_root_path(call: Call) -> Response:
    """``user<Type>RootPath`` for ``pathType`` (file, hdfs, s3)."""
    return _ok(call, entrance.user_root_path(call.user, call.query.get("pathType")))


@surface.route(f"{BASE}/entrance/{{exec_id}}/progressWithResource", methods=["GET"])
def progress_with_resource(call: Call, exec_id: str) -> Response:
    """Progress plus Linkis's resource block (``yarnResource: null``)."""
    return _ok(call, entrance.progress_with_resource(jobs.owned_job(call.user, exec_id)))


@surface.route(f"{BASE}/entrance/operation/metrics/runningtask", methods=["GET"])
def metrics_running_task(call: Call) -> Response:
    """``{runningTaskNumber, isCompleted}`` over the caller's Jobs."""
    return _ok(call, entrance.running_tasks(call.user), "success")


@surface.route(f"{BASE}/entrance/operation/metrics/taskinfo", methods=["GET"])
def metrics_task_info(call: Call) -> Response:
    """``{taskNumber, runningNumber, queuedNumber}`` over the caller's unfinished Jobs."""
    return _ok(call, entrance.task_info(call.user, call.query), "success")


@surface.route(f"{BASE}/filesystem/resultsetToExcel", methods=["GET"])
def resultset_to_excel(call: Call) -> Response:
    """One result set as a CSV or XLSX download (``outputFileType``), as Linkis's ``resultsetToExcel``."""
    from chalicelib import result_export

    got = result_export.export(call.user, call.query)
    headers = {"Content-Type": got.content_type, "Content-Disposition": f"attachment;filename={got.filename}"}
    return Response(body=got.body, status_code=200, headers=headers)
