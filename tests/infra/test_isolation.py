"""What code on the EMR cluster can reach, read from the synthesized policy documents.

The principals on the cluster are a user's runtime role (what the user's code holds: every
runtime role has exactly ``EmrRuntimeAccess`` attached and as its boundary, see
tests/functional/test_emr_isolation.py), the engine supervisor role (the credential broker's) and the
EC2 instance role (``EngineAccess``). Besides reading the documents, a small evaluator answers
"may this principal do this action on this resource" for the S3 and DynamoDB requests that matter,
with IAM's rules for what is used here: explicit Deny wins, ``*``/``?`` globs, ``StringLike``,
``ArnLike``, ``ForAllValues:StringLike`` and the ``${aws:PrincipalTag/...}`` variable.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import pytest
from synth_support import ACCOUNT, EXISTING_INSTANCE_ROLE_ARN, INFRA_DIR, Synth

BUCKET = "stage-bucket"
TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/stage-table"


# -- reading the template -----------------------------------------------------------------------


def resource_id(template: dict[str, Any], resource_type: str, prefix: str) -> str:
    found = [k for k, v in template["Resources"].items() if v["Type"] == resource_type and k.startswith(prefix)]
    assert len(found) == 1, f"expected one {resource_type} {prefix}*, found {found}"
    return found[0]


def resolve(template: dict[str, Any], value: Any) -> Any:
    """Intrinsics resolved to concrete strings (bucket, table, roles, policies get fixed names)."""
    if isinstance(value, list):
        return [resolve(template, v) for v in value]
    if not isinstance(value, dict):
        return value
    if "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(str(resolve(template, p)) for p in parts)
    if "Ref" in value:
        ref = value["Ref"]
        if ref == "AWS::Partition":
            return "aws"
        kind = template["Resources"][ref]["Type"]
        if kind == "AWS::S3::Bucket":
            return BUCKET
        if kind == "AWS::IAM::ManagedPolicy":
            return f"arn:aws:iam::{ACCOUNT}:policy/{ref}"
        return ref
    if "Fn::GetAtt" in value:
        ref, attribute = value["Fn::GetAtt"]
        kind = template["Resources"][ref]["Type"]
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{BUCKET}"
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            return TABLE
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            return f"arn:aws:iam::{ACCOUNT}:role/{ref}"
        return f"{ref}.{attribute}"
    return {k: resolve(template, v) for k, v in value.items()}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(template: dict[str, Any], logical: str) -> list[dict[str, Any]]:
    """Every statement of a managed policy, or of a role's inline and attached policies, resolved."""
    resource = template["Resources"][logical]
    props = resource["Properties"]
    found: list[dict[str, Any]] = []
    if resource["Type"] == "AWS::IAM::ManagedPolicy":
        found += props["PolicyDocument"]["Statement"]
    else:
        for policy in props.get("Policies", []):
            found += policy["PolicyDocument"]["Statement"]
        for other in template["Resources"].values():
            if other["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and {"Ref": logical} in other[
                "Properties"
            ].get("Roles", []):
                found += other["Properties"]["PolicyDocument"]["Statement"]
        for arn in props.get("ManagedPolicyArns", []):
            if isinstance(arn, dict) and "Ref" in arn:
                found += template["Resources"][arn["Ref"]]["Properties"]["PolicyDocument"]["Statement"]
    return [resolve(template, s) for s in found]


# -- a small policy evaluator --------------------------------------------------------------------


def _glob(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _substitute(text: str, tags: dict[str, str]) -> str | None:
    """``${aws:PrincipalTag/k}`` filled in; None when a tag is missing (IAM: the statement cannot match)."""
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        key = match.group(1)
        if key not in tags:
            missing = True
            return ""
        return tags[key]

    filled = re.sub(r"\$\{aws:PrincipalTag/([^}]+)\}", fill, text)
    return None if missing else filled


def _condition_holds(condition: dict[str, Any], context: dict[str, list[str]], tags: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        for key, expected in tests.items():
            patterns = [p for p in (_substitute(str(e), tags) for e in as_list(expected)) if p is not None]
            values = context.get(key)
            if operator.startswith("ForAllValues:"):
                if values is None:
                    continue  # an absent key makes ForAllValues true
                if not all(any(_glob(p, v) for p in patterns) for v in values):
                    return False
            elif operator in ("StringLike", "ArnLike", "StringEquals", "ArnEquals"):
                if values is None:
                    return False
                glob = operator.endswith("Like")
                if not any((_glob(p, v) if glob else p == v) for p in patterns for v in values):
                    return False
            else:
                raise AssertionError(f"the evaluator does not know {operator}")
    return True


def _applies(
    statement: dict[str, Any], action: str, resource: str, context: dict[str, list[str]], tags: dict[str, str]
) -> bool:
    if not any(_glob(a, action) for a in as_list(statement["Action"])):
        return False
    resources = [r for r in (_substitute(str(r), tags) for r in as_list(statement["Resource"])) if r is not None]
    if not any(_glob(r, resource) for r in resources):
        return False
    return _condition_holds(statement.get("Condition", {}), context, tags)


def allowed(
    policy: list[dict[str, Any]],
    action: str,
    resource: str,
    context: dict[str, list[str]] | None = None,
    tags: dict[str, str] | None = None,
) -> bool:
    """IAM's verdict for one identity policy set: an explicit Deny wins, else any Allow."""
    context, tags = context or {}, tags or {}
    hits = [s for s in policy if _applies(s, action, resource, context, tags)]
    return any(s["Effect"] == "Allow" for s in hits) and not any(s["Effect"] == "Deny" for s in hits)


def obj(key: str) -> str:
    return f"arn:aws:s3:::{BUCKET}/{key}"


def leading(key: str) -> dict[str, list[str]]:
    return {"dynamodb:LeadingKeys": [key]}


ALICE = {"sparkgate_user": "alice"}
ENGINE_OBJECTS = ["engine/sparkgate-engine.zip", "engine/bootstrap.sh", "engine/engine_main.py"]
ENGINE_OBJECTS += ["engine/credential_broker.py"]
WRITES = ["s3:PutObject", "s3:DeleteObject"]
#: Items no code on the cluster may touch (users, connections, works, tasks, idempotency, task ids...).
PLATFORM_KEYS = [
    "USER#alice",
    "CONN#abc",
    "WORK#w1",
    "WORKNAME#alice#nightly",
    "TASK#t1",
    "TASKID#7",
    "idempotency#sparkgate.login#abc",
    "COUNTER#jobs",
    "SCOPE#bob#s",
]


@pytest.fixture(scope="module")
def dev_t(dev: Synth) -> dict[str, Any]:
    return dev.template_json


@pytest.fixture(scope="module")
def prod_t(prod_existing: Synth) -> dict[str, Any]:
    return prod_existing.template_json


@pytest.fixture(scope="module")
def runtime(dev_t: dict[str, Any]) -> list[dict[str, Any]]:
    """What a runtime role (user code) may do: its one policy, which is also its boundary."""
    return statements(dev_t, resource_id(dev_t, "AWS::IAM::ManagedPolicy", "EmrRuntimeAccess"))


@pytest.fixture(scope="module")
def supervisor(dev_t: dict[str, Any]) -> list[dict[str, Any]]:
    return statements(dev_t, resource_id(dev_t, "AWS::IAM::Role", "EngineSupervisorRole"))


@pytest.fixture(scope="module")
def nodes(dev_t: dict[str, Any]) -> list[dict[str, Any]]:
    return statements(dev_t, resource_id(dev_t, "AWS::IAM::Role", "EmrInstanceRole"))


# -- the runtime role: what user code holds ----------------------------------------------------------


def test_runtime_policy_is_exactly_own_prefixes_and_reading_the_bundle(runtime: list[dict[str, Any]]) -> None:
    tag = "${aws:PrincipalTag/sparkgate_user}"
    assert runtime == [
        {"Sid": "ReadEngineBundle", "Effect": "Allow", "Action": "s3:GetObject", "Resource": obj("engine/*")},
        {
            "Sid": "OwnObjects",
            "Effect": "Allow",
            "Action": ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            "Resource": [obj(f"uploads/{tag}/*"), obj(f"results/{tag}/*")],
        },
        {
            "Sid": "ListOwnPrefixes",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": f"arn:aws:s3:::{BUCKET}",
            "Condition": {"StringLike": {"s3:prefix": [f"uploads/{tag}/*", f"results/{tag}/*", "engine/*"]}},
        },
        {
            "Sid": "BucketLocation",
            "Effect": "Allow",
            "Action": "s3:GetBucketLocation",
            "Resource": f"arn:aws:s3:::{BUCKET}",
        },
        {
            "Sid": "NeverTheEngineBundle",
            "Effect": "Deny",
            "Action": ["s3:DeleteObject", "s3:PutObject"],
            "Resource": obj("engine/*"),
        },
        {
            "Sid": "NeverThePlatform",
            "Effect": "Deny",
            "Action": [
                "dynamodb:*",
                "elasticmapreduce:*",
                "execute-api:*",
                "iam:*",
                "lambda:*",
                "secretsmanager:*",
                "sts:*",
            ],
            "Resource": "*",
        },
    ]


def test_runtime_role_reaches_its_own_user_prefixes_only(runtime: list[dict[str, Any]]) -> None:
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert allowed(runtime, action, obj("uploads/alice/trips.csv"), tags=ALICE)
        assert allowed(runtime, action, obj("results/alice/e1/_0.json"), tags=ALICE)
        for other in ("uploads/bob/private.sql", "results/bob/e2/_0.json", "uploads/alice", "logs/emr/j-1/x"):
            assert not allowed(runtime, action, obj(other), tags=ALICE), (action, other)
        assert not allowed(runtime, action, obj("uploads/alice/x"), tags={}), "no tag, no access"
    assert allowed(runtime, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": ["uploads/alice/"]}, ALICE)
    for prefix in ("uploads/", "uploads/bob/", "results/", ""):
        assert not allowed(runtime, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": [prefix]}, ALICE)
    assert not allowed(runtime, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {}, ALICE)  # listing the whole bucket


def test_runtime_role_has_no_table_and_no_bucket_wide_writes(runtime: list[dict[str, Any]]) -> None:
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan", "dynamodb:Query"):
        for key in ["JOB#e1", "SESSION#s1", *PLATFORM_KEYS]:
            assert not allowed(runtime, action, TABLE, leading(key), ALICE)
    for statement in runtime:
        if statement["Effect"] == "Allow":
            assert all(r != obj("*") and r != "*" for r in as_list(statement["Resource"])), statement
    for action in (
        "secretsmanager:GetSecretValue",
        "sts:AssumeRole",
        "iam:PassRole",
        "elasticmapreduce:AddJobFlowSteps",
    ):
        assert not allowed(runtime, action, "*", tags=ALICE)


def test_runtime_role_only_reads_the_engine_bundle(runtime: list[dict[str, Any]]) -> None:
    for key in ENGINE_OBJECTS:
        assert allowed(runtime, "s3:GetObject", obj(key), tags=ALICE)
        for action in WRITES:
            assert not allowed(runtime, action, obj(key), tags=ALICE)
            # even a role tagged with the prefix "engine" cannot reach it through its "own" prefixes
            assert not allowed(runtime, action, obj(key), tags={"sparkgate_user": "../engine"})


# -- the supervisor: table writes limited to its own items ---------------------------------------


def test_supervisor_table_access_is_its_item_families_only(supervisor: list[dict[str, Any]]) -> None:
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"):
        for key in ("JOB#e1", "SESSION#entrance-alice-spark", "KERNELUID#alice", "COUNTER#kernel_uid"):
            assert allowed(supervisor, action, TABLE, leading(key)), (action, key)
        for key in PLATFORM_KEYS:
            assert not allowed(supervisor, action, TABLE, leading(key)), (action, key)
    assert allowed(supervisor, "dynamodb:Query", f"{TABLE}/index/gsi1", leading("SESSIONQ#s1"))
    assert not allowed(supervisor, "dynamodb:Query", f"{TABLE}/index/gsi1", leading("LIVESESSIONS"))
    assert not allowed(supervisor, "dynamodb:Query", f"{TABLE}/index/gsi2", leading("USERJOBS#bob"))
    assert allowed(supervisor, "dynamodb:Query", TABLE, leading("SCOPE#alice#s"))  # geo catalog replay
    assert not allowed(supervisor, "dynamodb:PutItem", TABLE, leading("SCOPE#alice#s"))
    for action in ("dynamodb:Scan", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem"):
        assert not allowed(supervisor, action, TABLE, leading("JOB#e1"))
    table_statements = [s for s in supervisor if any(a.startswith("dynamodb:") for a in as_list(s["Action"]))]
    assert table_statements and all(
        "dynamodb:LeadingKeys" in s["Condition"]["ForAllValues:StringLike"] for s in table_statements
    )


def test_supervisor_writes_results_and_nothing_else_in_the_bucket(supervisor: list[dict[str, Any]]) -> None:
    assert allowed(supervisor, "s3:PutObject", obj("results/alice/e1/_0.json"))
    for key in ("uploads/alice/x", *ENGINE_OBJECTS, "logs/emr/x"):
        assert not allowed(supervisor, "s3:PutObject", obj(key))
    assert not allowed(supervisor, "s3:GetObject", obj("uploads/alice/x"))
    assert not allowed(supervisor, "s3:DeleteObject", obj("results/alice/e1/_0.json"))
    assert not allowed(supervisor, "secretsmanager:GetSecretValue", "*")


def test_supervisor_role_is_assumed_by_the_instance_role_only(dev_t: dict[str, Any], prod_t: dict[str, Any]) -> None:
    for template, trusted in (
        (dev_t, f"arn:aws:iam::{ACCOUNT}:role/{resource_id(dev_t, 'AWS::IAM::Role', 'EmrInstanceRole')}"),
        (prod_t, EXISTING_INSTANCE_ROLE_ARN),
    ):
        role = template["Resources"][resource_id(template, "AWS::IAM::Role", "EngineSupervisorRole")]["Properties"]
        assert resolve(template, role["AssumeRolePolicyDocument"]["Statement"]) == [
            {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"AWS": trusted}}
        ]
        assert role["MaxSessionDuration"] == 3600


# -- the nodes -------------------------------------------------------------------------------------


def test_instance_role_has_no_table_and_writes_only_emr_logs(
    nodes: list[dict[str, Any]], dev_t: dict[str, Any]
) -> None:
    for key in ("JOB#e1", *PLATFORM_KEYS):
        assert not allowed(nodes, "dynamodb:GetItem", TABLE, leading(key))
    assert allowed(nodes, "s3:PutObject", obj("logs/emr/j-1/steps/s-1/stderr.gz"))
    for key in ("uploads/alice/x", "results/alice/e/_0.json", *ENGINE_OBJECTS):
        assert not allowed(nodes, "s3:PutObject", obj(key))
        assert not allowed(nodes, "s3:DeleteObject", obj(key))
    for key in ENGINE_OBJECTS:
        assert allowed(nodes, "s3:GetObject", obj(key))  # the bootstrap action and the broker come from here
    runtime_role = f"arn:aws:iam::{ACCOUNT}:role/sparkgate/dev/runtime/sparkgate-dev-rt-alice"
    assert allowed(nodes, "sts:AssumeRole", runtime_role) and allowed(nodes, "sts:TagSession", runtime_role)
    assert not allowed(nodes, "sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/sparkgate/prod/runtime/x")
    assert not allowed(nodes, "sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/AppRole")
    supervisor_arn = f"arn:aws:iam::{ACCOUNT}:role/{resource_id(dev_t, 'AWS::IAM::Role', 'EngineSupervisorRole')}"
    assert allowed(nodes, "sts:AssumeRole", supervisor_arn)


def test_no_principal_on_the_cluster_can_write_the_engine_bundle(dev_t: dict[str, Any]) -> None:
    """Of every role and policy in the stack, only the app (not on the cluster) and CDK's deployer can."""
    writers = set()
    for logical, resource in dev_t["Resources"].items():
        if resource["Type"] not in ("AWS::IAM::Role", "AWS::IAM::ManagedPolicy"):
            continue
        policy = statements(dev_t, logical)
        if any(allowed(policy, action, obj(key), tags=ALICE) for action in WRITES for key in ENGINE_OBJECTS):
            writers.add(logical)
    cluster_side = {
        resource_id(dev_t, "AWS::IAM::Role", "EmrInstanceRole"),
        resource_id(dev_t, "AWS::IAM::Role", "EngineSupervisorRole"),
        resource_id(dev_t, "AWS::IAM::ManagedPolicy", "EmrRuntimeAccess"),
        resource_id(dev_t, "AWS::IAM::ManagedPolicy", "EngineAccess"),
        resource_id(dev_t, "AWS::IAM::Role", "EmrServiceRole"),
    }
    assert not writers & cluster_side
    assert resource_id(dev_t, "AWS::IAM::Role", "AppRole") in writers  # the evaluator does see writers
    # Who can: the app's functions (the trusted side; the bucket is theirs) and CDK's custom resources
    # (the bundle deployment itself, and dev's auto-delete of the bucket).
    for writer in writers:
        assert writer.startswith(("AppRole", "CustomCDKBucketDeployment", "CustomS3AutoDeleteObjects")), writer


# -- the cluster and the app ---------------------------------------------------------------------


def test_security_configuration_enables_runtime_roles_and_imdsv2_with_one_hop(
    dev_t: dict[str, Any], prod_t: dict[str, Any]
) -> None:
    for template in (dev_t, prod_t):
        [config] = [r for r in template["Resources"].values() if r["Type"] == "AWS::EMR::SecurityConfiguration"]
        assert config["Properties"]["SecurityConfiguration"] == {
            "AuthorizationConfiguration": {"IAMConfiguration": {"EnableApplicationScopedIAMRole": True}},
            "InstanceMetadataServiceConfiguration": {
                "MinimumInstanceMetadataServiceVersion": 2,
                "HttpPutResponseHopLimit": 1,
            },
        }
    cluster = next(r for r in dev_t["Resources"].values() if r["Type"] == "AWS::EMR::Cluster")
    assert cluster["Properties"]["SecurityConfiguration"] == {
        "Ref": resource_id(dev_t, "AWS::EMR::SecurityConfiguration", "EmrSecurityConfiguration")
    }


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_app_adds_steps_only_under_this_stages_runtime_roles(
    variant: str, dev_t: dict[str, Any], prod_t: dict[str, Any]
) -> None:
    template = dev_t if variant == "dev" else prod_t
    app = statements(template, resource_id(template, "AWS::IAM::Role", "AppRole"))
    cluster = next(
        s["Resource"] for s in app if "elasticmapreduce:AddJobFlowSteps" in as_list(s["Action"])
    )  # one statement
    own = f"arn:aws:iam::{ACCOUNT}:role/sparkgate/{variant}/runtime/sparkgate-{variant}-rt-alice"
    role_key = "elasticmapreduce:ExecutionRoleArn"
    assert allowed(app, "elasticmapreduce:AddJobFlowSteps", cluster, {role_key: [own]})
    assert not allowed(app, "elasticmapreduce:AddJobFlowSteps", cluster, {})  # no runtime role: refused
    for other in (
        f"arn:aws:iam::{ACCOUNT}:role/{resource_id(template, 'AWS::IAM::Role', 'EngineSupervisorRole')}",
        f"arn:aws:iam::{ACCOUNT}:role/sparkgate/{'prod' if variant == 'dev' else 'dev'}/runtime/x",
        f"arn:aws:iam::{ACCOUNT}:role/AdminRole",
    ):
        assert not allowed(app, "elasticmapreduce:AddJobFlowSteps", cluster, {role_key: [other]})
    # The app may create runtime roles only bounded by, and attach nothing but, the runtime policy.
    policy = f"arn:aws:iam::{ACCOUNT}:policy/{resource_id(template, 'AWS::IAM::ManagedPolicy', 'EmrRuntimeAccess')}"
    assert allowed(app, "iam:CreateRole", own, {"iam:PermissionsBoundary": [policy]})
    assert not allowed(app, "iam:CreateRole", own, {})
    assert not allowed(app, "iam:CreateRole", own, {"iam:PermissionsBoundary": ["arn:aws:iam::aws:policy/Admin"]})
    assert not allowed(
        app, "iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/anything", {"iam:PermissionsBoundary": [policy]}
    )
    assert allowed(app, "iam:AttachRolePolicy", own, {"iam:PolicyARN": [policy]})
    assert not allowed(
        app, "iam:AttachRolePolicy", own, {"iam:PolicyARN": ["arn:aws:iam::aws:policy/AdministratorAccess"]}
    )
    for action in (
        "iam:PutRolePolicy",
        "iam:UpdateAssumeRolePolicy",
        "iam:DeleteRolePermissionsBoundary",
        "iam:PassRole",
    ):
        assert not allowed(app, action, own, {"iam:PolicyARN": [policy], "iam:PermissionsBoundary": [policy]})


def test_prod_functions_trust_the_existing_clusters_instance_role(prod_t: dict[str, Any]) -> None:
    api = prod_t["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
    assert api["SPARKGATE_EMR_INSTANCE_ROLE_ARN"] == EXISTING_INSTANCE_ROLE_ARN
    assert resolve(prod_t, api["SPARKGATE_EMR_RUNTIME_ROLE_ARN"]) == (
        f"arn:aws:iam::{ACCOUNT}:role/sparkgate/prod/runtime/sparkgate-prod-rt-{{user_id}}"
    )
    node = statements(prod_t, resource_id(prod_t, "AWS::IAM::ManagedPolicy", "EngineAccess"))
    assert allowed(node, "sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/sparkgate/prod/runtime/sparkgate-prod-rt-a")


def test_existing_cluster_without_its_instance_role_is_refused(tmp_path: Any, project_copy: Any) -> None:
    from synth_support import EXISTING_CLUSTER_ID, synthesize

    with pytest.raises(ValueError, match="existingInstanceRoleArn"):
        synthesize(tmp_path, project_copy, {"stage": "prod", "existingClusterId": EXISTING_CLUSTER_ID})


# -- the bootstrap action ---------------------------------------------------------------------------


def test_bootstrap_blocks_imds_for_kernel_uids_and_installs_the_broker_on_the_primary() -> None:
    script = (INFRA_DIR / "assets" / "bootstrap.sh").read_text()
    assert 'range="$(cat /etc/sparkgate/kernel-uid-min)-4294967294"' in script
    assert '-I OUTPUT 1 -d "$2" -m owner --uid-owner "$range" -j REJECT' in script
    assert "ensure iptables 169.254.169.254/32" in script
    assert "ensure ip6tables fd00:ec2::254/128" in script
    assert "OnUnitActiveSec=60s" in script  # re-asserted every minute
    assert "kernel.yama.ptrace_scope = 1" in script
    assert "--allow-user $SUPERVISOR_USER --deny-uid-from $KERNEL_UID_MIN" in script
    assert "credential_process = $PY -I /usr/local/libexec/sparkgate/credential_broker.py fetch" in script
    assert '"isMaster"' in script
    # The broker and the guard are root's: installed root-owned, out of the reach of the step user.
    assert "sudo install -o root -g root -m 0644" in script
