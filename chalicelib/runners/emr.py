"""EmrRunner: each driver is an EMR step (``command-runner.jar spark-submit ...``) on the configured cluster.

The engine ships as a zip (``settings.engine_uri``, e.g. ``s3://bucket/engine/sparkgate-engine.zip``)
passed with ``--py-files``; the entry script is ``engine_main.py`` next to it (a copy of
``chalicelib/engine/emr_entry.py``). The stage's table/bucket/region reach the driver as
``--env KEY=VALUE`` engine arguments (client deploy mode: the driver runs on the primary node).
EMR is compute, not a data service, so this module calls ``chalicelib.store.aws.client`` itself.

Tenant isolation (see docs/security-cloud.md):

- **Every step runs under its owner's EMR runtime role** (``ExecutionRoleArn``): the ARN is
  ``SPARKGATE_EMR_RUNTIME_ROLE_ARN`` with ``{user_id}`` replaced by the owner, one IAM role per user,
  tagged ``sparkgate_user=<user id>``; the stack's shared runtime policy scopes S3 to that user's
  prefixes through ``${aws:PrincipalTag/sparkgate_user}``. When ``SPARKGATE_EMR_RUNTIME_POLICY_ARN``
  and ``SPARKGATE_EMR_INSTANCE_ROLE_ARN`` are set, a missing role is created on first use (that
  policy attached and as its permissions boundary, trusted by the cluster's instance role only).
  Outside the local stage a step without a runtime role is refused.
- **The launcher carries nothing the user chose that could run code in it**: the master is always
  ``yarn``, only resource-sizing ``spark.*`` settings reach ``spark-submit`` (the kernel applies the
  session's own configs, envs and master itself), user environment variables never reach the
  engine's ``--env`` (they would land in the supervisor's environment).
- ``SPARKGATE_EMR_SUPERVISOR_PROFILE``: the AWS profile (in ``/etc/sparkgate/aws-config``, written
  by the bootstrap action) through which the supervisor gets its table credentials from the
  node's credential broker; forwarded as ``AWS_CONFIG_FILE``/``AWS_PROFILE``.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.config import Settings, settings
from chalicelib.records import JobRecord, SessionRecord
from chalicelib.runners.base import Probe, Runner, RunnerError, RunState, batch_args, pool_args, session_args
from chalicelib.store.aws import client

ENTRY_SCRIPT = "engine_main.py"
_RUNNING = ("PENDING", "RUNNING", "CANCEL_PENDING")
_FAILED = ("CANCELLED", "FAILED", "INTERRUPTED")
_OUTCOMES = {"COMPLETED": "Succeed", "FAILED": "Failed", "CANCELLED": "Cancelled", "INTERRUPTED": "Cancelled"}
_FORWARDED_ENV = ("SPARKGATE_STAGE", "SPARKGATE_TABLE", "SPARKGATE_BUCKET", "AWS_REGION", "AWS_DEFAULT_REGION")

#: The ARN template of a user's runtime role; ``{user_id}`` is replaced by the job's owner.
RUNTIME_ROLE_ENV = "SPARKGATE_EMR_RUNTIME_ROLE_ARN"
#: The shared runtime policy: attached to every runtime role and its permissions boundary.
RUNTIME_POLICY_ENV = "SPARKGATE_EMR_RUNTIME_POLICY_ARN"
#: The cluster's EC2 instance role: the only principal a runtime role trusts (EMR assumes it through it).
INSTANCE_ROLE_ENV = "SPARKGATE_EMR_INSTANCE_ROLE_ARN"
#: Seconds to wait after creating a role before EMR may assume it (IAM is eventually consistent).
ROLE_SETTLE_ENV = "SPARKGATE_EMR_ROLE_SETTLE_SECONDS"
#: The AWS profile the supervisor's credentials come from on the nodes (see the module docstring).
SUPERVISOR_PROFILE_ENV = "SPARKGATE_EMR_SUPERVISOR_PROFILE"
#: Where the bootstrap action writes that profile.
SUPERVISOR_AWS_CONFIG = "/etc/sparkgate/aws-config"
#: The role tag naming the user a runtime role belongs to (``${aws:PrincipalTag/sparkgate_user}``).
USER_TAG = "sparkgate_user"
#: The placeholder in :data:`RUNTIME_ROLE_ENV`.
USER_PLACEHOLDER = "{user_id}"

#: A user id that may name a role and an S3 prefix (ids are uuid hex; role names allow 64 characters).
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role(/(?:[\w+=,.@-]+/)*)([\w+=,.@-]{1,64})")
_PROFILE = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: User ``spark.*`` settings the launcher (``spark-submit``) may carry: resource sizing only. Anything
#: that loads code, changes the launcher's JVM or Python (extraJavaOptions, extraClassPath, jars,
#: plugins, pyspark.python, ...) stays out; the kernel applies the session's configs to its own session.
_LAUNCHER_CONF = re.compile(
    r"spark\.(?:executor\.(?:cores|memory|memoryOverhead|instances)"
    r"|driver\.(?:cores|memory|memoryOverhead|maxResultSize)"
    r"|dynamicAllocation\.(?:enabled|minExecutors|maxExecutors|initialExecutors|executorIdleTimeout)"
    r"|default\.parallelism|sql\.shuffle\.partitions|task\.cpus)"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: Runtime roles known to exist with the shared policy attached (per Lambda container).
_READY: set[str] = set()


def forget_runtime_roles() -> None:
    """Forget which runtime roles were already checked (tests that start a fresh IAM backend)."""
    _READY.clear()


def check_owner(owner: object) -> str:
    """``owner`` if it can name a runtime role and an S3 prefix, else :class:`RunnerError`."""
    if not isinstance(owner, str) or not _OWNER.fullmatch(owner):
        raise RunnerError(f"not a user id a runtime role can be named after: {owner!r}")
    return owner


def runtime_role_arn(owner: object) -> str | None:
    """The runtime role ARN of ``owner`` (None when ``SPARKGATE_EMR_RUNTIME_ROLE_ARN`` is unset)."""
    template = os.environ.get(RUNTIME_ROLE_ENV, "")
    if not template:
        return None
    if template.count(USER_PLACEHOLDER) != 1:
        raise RunnerError(f"{RUNTIME_ROLE_ENV} must contain {USER_PLACEHOLDER} exactly once")
    arn = template.replace(USER_PLACEHOLDER, check_owner(owner))
    if not _ROLE_ARN.fullmatch(arn):
        raise RunnerError(f"{RUNTIME_ROLE_ENV} does not give an IAM role ARN: {arn!r}")
    return arn


def trust_policy(instance_role_arn: str) -> dict[str, Any]:
    """A runtime role's trust policy: only the cluster's instance role may assume it (EMR does, per step).

    EMR tags the sessions it opens; no session tag may set ``sparkgate_*`` keys, so the role's own
    ``sparkgate_user`` tag is the one ``${aws:PrincipalTag/sparkgate_user}`` sees.
    """
    principal = {"AWS": instance_role_arn}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "EmrStepsOfThisCluster", "Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"},
            {
                "Sid": "NoSparkgateSessionTags",
                "Effect": "Allow",
                "Principal": principal,
                "Action": "sts:TagSession",
                "Condition": {"ForAllValues:StringNotLike": {"aws:TagKeys": ["sparkgate_*"]}},
            },
        ],
    }


def _role_name(arn: str) -> tuple[str, str]:
    match = _ROLE_ARN.fullmatch(arn)
    assert match is not None  # runtime_role_arn checked it
    return match.group(1), match.group(2)


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def ensure_runtime_role(owner: object) -> str:
    """The runtime role ARN of ``owner``, created (tagged, bounded, policy attached) when it is missing.

    Without :data:`RUNTIME_POLICY_ENV` and :data:`INSTANCE_ROLE_ENV` the roles are managed outside
    sparkgate and only the ARN is answered. An existing role must carry the owner's tag and the
    shared policy as its boundary, or the step is refused.
    """
    arn = runtime_role_arn(owner)
    if arn is None:
        raise RunnerError(f"{RUNTIME_ROLE_ENV} is not set: steps need a per-user EMR runtime role")
    policy = os.environ.get(RUNTIME_POLICY_ENV, "")
    trusted = os.environ.get(INSTANCE_ROLE_ENV, "")
    if arn in _READY or not (policy and trusted):
        return arn
    user = check_owner(owner)
    path, name = _role_name(arn)
    iam = client("iam")
    created = False
    try:
        try:
            role = iam.get_role(RoleName=name)["Role"]
        except ClientError as err:
            if _error_code(err) != "NoSuchEntity":
                raise
            try:
                role = iam.create_role(
                    Path=path,
                    RoleName=name,
                    AssumeRolePolicyDocument=json.dumps(trust_policy(trusted)),
                    PermissionsBoundary=policy,
                    Description=f"sparkgate EMR runtime role of user {user}",
                    MaxSessionDuration=3600,
                    Tags=[{"Key": USER_TAG, "Value": user}],
                )["Role"]
                created = True
            except ClientError as again:
                if _error_code(again) != "EntityAlreadyExists":
                    raise
                role = iam.get_role(RoleName=name)["Role"]  # created concurrently by another container
        tags = {str(t["Key"]): str(t["Value"]) for t in role.get("Tags") or []}
        boundary = (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
        if role.get("Arn") != arn or tags.get(USER_TAG) != user or boundary != policy:
            raise RunnerError(
                f"IAM role {name} exists but is not user {user}'s runtime role "
                f"(arn, {USER_TAG} tag or permissions boundary differ): refusing to run steps under it"
            )
        iam.attach_role_policy(RoleName=name, PolicyArn=policy)  # idempotent
    except ClientError as err:
        raise RunnerError(f"could not prepare the runtime role {name}: {err}") from err
    if created:
        time.sleep(float(os.environ.get(ROLE_SETTLE_ENV, "10") or 0))
    _READY.add(arn)
    return arn


def delete_runtime_role(owner: object) -> bool:
    """Remove ``owner``'s runtime role (for the user admin path); False when there was none."""
    arn = runtime_role_arn(owner)
    policy = os.environ.get(RUNTIME_POLICY_ENV, "")
    if arn is None or not policy:
        return False
    _, name = _role_name(arn)
    _READY.discard(arn)
    iam = client("iam")
    try:
        try:
            iam.detach_role_policy(RoleName=name, PolicyArn=policy)
        except ClientError as err:
            if _error_code(err) != "NoSuchEntity":
                raise
        iam.delete_role(RoleName=name)
    except ClientError as err:
        if _error_code(err) == "NoSuchEntity":
            return False
        raise RunnerError(f"could not delete the runtime role {name}: {err}") from err
    return True


def launcher_confs(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The session's ``spark.*`` settings the launcher may carry (see :data:`_LAUNCHER_CONF`), sorted."""
    kept = []
    for key, value in sorted((config.get("configs") or {}).items()):
        text = str(value)
        if _LAUNCHER_CONF.fullmatch(str(key)) and not _CONTROL.search(text):
            kept.append((str(key), text))
    return kept


#: The FLINK_SQL artefact step's shell program (``bash -c FLINK_SQL_SCRIPT sparkgate-flink-sql <uri>``).
#: It is a constant: the artefact's URI arrives as ``$1`` and is never parsed by the shell. The SQL file
#: is copied with EMRFS (the step's runtime role) into a fresh private directory (``mktemp -d``: 0700),
#: so no other local user can plant or swap it, and is removed afterwards.
FLINK_SQL_SCRIPT = (
    'set -euo pipefail; work="$(mktemp -d)"; trap \'rm -rf -- "$work"\' EXIT; '
    'hadoop fs -copyToLocal "$1" "$work/work.sql"; '
    '/usr/lib/flink/bin/sql-client.sh -f "$work/work.sql"'
)
_EXEC_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_JAVA_CLASS = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*")


def check_exec_id(exec_id: object) -> str:
    """``exec_id`` if it is a plain id (it names the step), else :class:`RunnerError`."""
    if not isinstance(exec_id, str) or not _EXEC_ID.fullmatch(exec_id):
        raise RunnerError(f"not an exec id: {exec_id!r}")
    return exec_id


def check_artefact_uri(uri: object) -> str:
    """An artefact's ``s3://`` URI (local paths mean nothing on the cluster), else :class:`RunnerError`.

    The URI is only ever one argument of a command, so any S3 key is fine; control characters
    (newlines in step arguments and logs) are refused.
    """
    text = str(uri or "")
    if not text.startswith("s3://") or len(text) > 2048 or _CONTROL.search(text):
        raise RunnerError(f"an EMR artefact run needs an s3:// artefact without control characters, not {text!r}")
    return text


def check_step_args(args: list[Any]) -> list[str]:
    """A work's extra arguments as strings; control characters are refused."""
    texts = [str(a) for a in args]
    if any(_CONTROL.search(a) for a in texts):
        raise RunnerError("artefact arguments must not contain control characters")
    return texts


def check_java_class(name: object) -> str:
    """A Java class name (never an option such as ``--conf``), else :class:`RunnerError`."""
    text = str(name or "")
    if not _JAVA_CLASS.fullmatch(text):
        raise RunnerError(f"main_class_name must be a Java class name, not {text!r}")
    return text


class EmrRunner(Runner):
    """Runs drivers as steps of an EMR cluster."""

    name = "emr"

    def __init__(self, cfg: Settings | None = None) -> None:
        self.cfg = cfg or settings()

    def _entry_uri(self) -> str:
        if not self.cfg.engine_uri:
            raise RunnerError("SPARKGATE_ENGINE_URI is not set (the engine zip on S3)")
        return self.cfg.engine_uri.rsplit("/", 1)[0] + "/" + ENTRY_SCRIPT

    @staticmethod
    def engine_env() -> dict[str, str]:
        """The platform's variables for the engine process (never anything the user chose)."""
        env = {k: os.environ[k] for k in _FORWARDED_ENV if os.environ.get(k)}
        profile = os.environ.get(SUPERVISOR_PROFILE_ENV, "")
        if profile:
            if not _PROFILE.fullmatch(profile):
                raise RunnerError(f"{SUPERVISOR_PROFILE_ENV} is not a profile name: {profile!r}")
            env.update({"AWS_CONFIG_FILE": SUPERVISOR_AWS_CONFIG, "AWS_PROFILE": profile})
        return env

    def spark_submit_args(self, engine_args: list[str], config: dict[str, Any]) -> list[str]:
        """The ``command-runner.jar`` arguments: ``spark-submit --deploy-mode client ... <entry> <engine args>``.

        The master is always ``yarn`` (a session's own ``master`` is the kernel's business, never
        the launcher's); see :func:`launcher_confs` for which settings the launcher carries.
        """
        args = ["spark-submit", "--deploy-mode", "client", "--master", "yarn"]
        for key, value in launcher_confs(config):
            args += ["--conf", f"{key}={value}"]
        args += ["--py-files", self.cfg.engine_uri, self._entry_uri(), *engine_args]
        for key, value in sorted(self.engine_env().items()):
            args += ["--env", f"{key}={value}"]
        return args

    def runtime_role_for(self, owner: object) -> str | None:
        """The runtime role a step of ``owner`` runs under; None only on the local stage without roles."""
        if os.environ.get(RUNTIME_ROLE_ENV):
            return ensure_runtime_role(owner)
        if self.cfg.is_local:
            return None
        raise RunnerError(
            f"{RUNTIME_ROLE_ENV} is not set: on stage {self.cfg.stage!r} every EMR step must run "
            "under its owner's runtime role (see docs/security-cloud.md)"
        )

    def submit_step(self, step: dict[str, Any], owner: object) -> dict[str, Any]:
        """Add ``step`` (a ``Steps`` entry) under ``owner``'s runtime role; answers the handle."""
        if not self.cfg.emr_cluster_id:
            raise RunnerError("SPARKGATE_EMR_CLUSTER_ID is not set")
        request: dict[str, Any] = {"JobFlowId": self.cfg.emr_cluster_id, "Steps": [step]}
        role = self.runtime_role_for(owner)
        if role is not None:
            request["ExecutionRoleArn"] = role
        try:
            got = client("emr").add_job_flow_steps(**request)
        except ClientError as err:
            raise RunnerError(f"EMR refused the step: {err}") from err
        handle = {
            "runner": self.name,
            "cluster_id": self.cfg.emr_cluster_id,
            "step_id": got["StepIds"][0],
            "started_at": time.time(),
        }
        if role is not None:
            handle["execution_role_arn"] = role
        return handle

    def _add_step(self, name: str, engine_args: list[str], config: dict[str, Any], owner: object) -> dict[str, Any]:
        if not self.cfg.emr_cluster_id:
            raise RunnerError("SPARKGATE_EMR_CLUSTER_ID is not set")
        step = {
            "Name": name[:256],
            "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": self.spark_submit_args(engine_args, config)},
        }
        return self.submit_step(step, owner)

    def start_session(self, session: SessionRecord) -> dict[str, Any]:
        """Add a session-driver step for ``session`` under its owner's runtime role."""
        name = f"sparkgate session {session['session_id']} g{int(session['generation'])}"
        return self._add_step(name, session_args(session), dict(session.get("config") or {}), session.get("owner"))

    def start_pool(self, entry: dict[str, Any]) -> dict[str, Any]:
        """A warm spare for one user, as a step under that user's runtime role (fresh drivers have no
        owner, hence no role to run under: refused, see ``chalicelib.pool``)."""
        if not entry.get("owner"):
            raise RunnerError("the emr runner keeps warm drivers per user only (a step needs its owner's role)")
        return self._add_step(f"sparkgate pool {entry['pool_id']}", pool_args(entry), {}, entry["owner"])

    def start_batch(self, job: JobRecord) -> dict[str, Any]:
        """Add a batch-driver step for ``job`` under its owner's runtime role."""
        config = dict(job.get("session_config") or {})
        return self._add_step(f"sparkgate batch {job['exec_id']}", batch_args(job), config, job.get("owner"))

    @staticmethod
    def artefact_step(job: JobRecord) -> dict[str, Any]:
        """The EMR step (``command-runner.jar``) that runs ``job``'s artefact (``job["artefact_run"]``).

        No user text is ever parsed by a shell: every value is one element of the argument list
        ``command-runner.jar`` executes; FLINK_SQL's copy-then-run is :data:`FLINK_SQL_SCRIPT`, a constant
        program that receives the URI as a positional parameter. :meth:`start_artefact` submits it under
        the owner's runtime role.
        """
        run: dict[str, Any] = job["artefact_run"]
        exec_id = check_exec_id(job["exec_id"])
        artefact = check_artefact_uri(run.get("artefact"))
        args = check_step_args(run.get("args") or [])
        if run.get("engine") == "flink" and run.get("sql"):
            command = ["bash", "-c", FLINK_SQL_SCRIPT, "sparkgate-flink-sql", artefact]
        else:
            main_class = check_java_class(run.get("main_class"))
            if run.get("engine") == "flink":
                command = ["flink", "run", "-m", "yarn-cluster", "-c", main_class, artefact, *args]
            else:
                command = ["spark-submit", "--deploy-mode", "cluster", "--class", main_class, artefact, *args]
        return {
            "Name": f"sparkgate-task-{exec_id}",
            "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": command},
        }

    def start_artefact(self, job: JobRecord) -> dict[str, Any]:
        """Add ``job``'s artefact step (:meth:`artefact_step`) under its owner's runtime role."""
        return self.submit_step(self.artefact_step(job), job.get("owner"))

    def probe(self, handle: dict[str, Any]) -> Probe:
        """The step's state by ``describe_step``."""
        return self.state(handle).probe

    def state(self, handle: dict[str, Any]) -> RunState:
        """The step by ``describe_step``: PENDING is not started yet; a final state is the run's own verdict."""
        if handle.get("runner") != self.name:
            return RunState("unknown", started=False)
        try:
            step = client("emr").describe_step(ClusterId=handle["cluster_id"], StepId=handle["step_id"])["Step"]
        except ClientError:
            return RunState("unknown", started=False)
        status = step["Status"]
        state = status["State"]
        if state in _RUNNING:
            return RunState("running", started=state != "PENDING")
        failure = status.get("FailureDetails") or {}
        reason = "; ".join(str(failure[k]) for k in ("Reason", "Message", "LogFile") if failure.get(k)) or None
        if state in _OUTCOMES:
            probe: Probe = "finished" if state == "COMPLETED" else "failed"
            return RunState(probe, started=True, outcome=_OUTCOMES[state], reason=reason or f"EMR step {state}")
        return RunState("unknown", started=False)

    def cancel(self, handle: dict[str, Any]) -> None:
        """``cancel_steps`` with SEND_INTERRUPT (a pending step is removed, a running one interrupted)."""
        if handle.get("runner") != self.name:
            return
        try:
            client("emr").cancel_steps(
                ClusterId=handle["cluster_id"], StepIds=[handle["step_id"]], StepCancellationOption="SEND_INTERRUPT"
            )
        except ClientError as err:
            raise RunnerError(f"EMR could not cancel step {handle['step_id']}: {err}") from err
