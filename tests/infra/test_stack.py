"""The synthesized sparkgate stack has the resources and the IAM statements issue 7 asks for."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match
from synth_support import ACCOUNT, EXISTING_CLUSTER_ID, INFRA_DIR, REGION, Synth

from chalicelib.store import definition

PARTITION = {"Ref": "AWS::Partition"}


def only(template: dict[str, Any], resource_type: str) -> tuple[str, dict[str, Any]]:
    """The one resource of ``resource_type``: (logical id, resource)."""
    found = [(k, v) for k, v in template["Resources"].items() if v["Type"] == resource_type]
    assert len(found) == 1, f"expected one {resource_type}, found {[k for k, _ in found]}"
    return found[0]


def logical_id(template: dict[str, Any], resource_type: str) -> str:
    """The logical id of the one resource of ``resource_type``."""
    return only(template, resource_type)[0]


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The app's Lambda functions (SAM functions from ``chalice package``)."""
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}


def resource_id(template: dict[str, Any], resource_type: str, prefix: str) -> str:
    """The logical id of the one ``resource_type`` whose id starts with ``prefix`` (CDK adds a hash)."""
    found = [k for k, v in template["Resources"].items() if v["Type"] == resource_type and k.startswith(prefix)]
    assert len(found) == 1, f"expected one {resource_type} {prefix}*, found {found}"
    return found[0]


def app_role_id(template: dict[str, Any]) -> str:
    """The logical id of the role every app function runs under."""
    roles = {fn["Properties"]["Role"]["Fn::GetAtt"][0] for fn in functions(template).values()}
    assert len(roles) == 1, roles
    return roles.pop()


def arn(service: str, resource: str | list[Any]) -> dict[str, Any]:
    """The ``Fn::Join`` CDK renders for ``Stack.format_arn`` in a known account and region."""
    parts: list[Any] = ["arn:", PARTITION, f":{service}:{REGION}:{ACCOUNT}:"]
    for part in resource if isinstance(resource, list) else [resource]:
        if isinstance(part, str) and isinstance(parts[-1], str):
            parts[-1] += part  # CDK merges adjacent literals
        else:
            parts.append(part)
    return {"Fn::Join": ["", parts]}


def expected_app_statements(template: dict[str, Any], cluster_id: Any) -> list[dict[str, Any]]:
    """Exactly what the Lambda role may do (besides pushing to its own WebSocket API)."""
    table = logical_id(template, "AWS::DynamoDB::Table")
    bucket = logical_id(template, "AWS::S3::Bucket")
    secret = logical_id(template, "AWS::SecretsManager::Secret")
    table_arn = {"Fn::GetAtt": [table, "Arn"]}
    bucket_arn = {"Fn::GetAtt": [bucket, "Arn"]}
    log_groups = {
        "Fn::Join": [
            "",
            ["arn:", PARTITION, f":logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{template['_stack_name']}-*"],
        ]
    }
    log_streams = {
        "Fn::Join": [
            "",
            [
                "arn:",
                PARTITION,
                f":logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{template['_stack_name']}-*:log-stream:*",
            ],
        ]
    }
    cluster_arn = arn("elasticmapreduce", ["cluster/", cluster_id])
    runtime_roles = {
        "Fn::Join": ["", ["arn:", PARTITION, f":iam::{ACCOUNT}:role/sparkgate/{template['_stage']}/runtime/*"]]
    }
    runtime_policy = {"Ref": resource_id(template, "AWS::IAM::ManagedPolicy", "EmrRuntimeAccess")}
    return [
        {"Sid": "Logs", "Effect": "Allow", "Action": "logs:CreateLogGroup", "Resource": log_groups},
        {
            "Sid": "LogEvents",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": log_streams,
        },
        {
            "Sid": "Table",
            "Effect": "Allow",
            "Action": [
                "dynamodb:BatchGetItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
            ],
            "Resource": [table_arn, {"Fn::Join": ["", [table_arn, "/index/*"]]}],
        },
        {
            "Sid": "TableStream",
            "Effect": "Allow",
            "Action": ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
            "Resource": {"Fn::GetAtt": [table, "StreamArn"]},
        },
        {"Sid": "ListStreams", "Effect": "Allow", "Action": "dynamodb:ListStreams", "Resource": "*"},
        {
            "Sid": "BucketObjects",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": {"Fn::Join": ["", [bucket_arn, "/*"]]},
        },
        {
            "Sid": "BucketUploadsDelete",
            "Effect": "Allow",
            "Action": "s3:DeleteObject",
            "Resource": {"Fn::Join": ["", [bucket_arn, "/uploads/*"]]},
        },
        {"Sid": "BucketList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn},
        {
            "Sid": "StepRunner",
            "Effect": "Allow",
            "Action": ["elasticmapreduce:CancelSteps", "elasticmapreduce:DescribeStep"],
            "Resource": cluster_arn,
        },
        {
            "Sid": "AddStepsUnderRuntimeRoles",
            "Effect": "Allow",
            "Action": "elasticmapreduce:AddJobFlowSteps",
            "Resource": cluster_arn,
            "Condition": {"ArnLike": {"elasticmapreduce:ExecutionRoleArn": runtime_roles}},
        },
        {"Sid": "RuntimeRolesRead", "Effect": "Allow", "Action": "iam:GetRole", "Resource": runtime_roles},
        {
            "Sid": "RuntimeRolesCreate",
            "Effect": "Allow",
            "Action": "iam:CreateRole",
            "Resource": runtime_roles,
            "Condition": {"StringEquals": {"iam:PermissionsBoundary": runtime_policy}},
        },
        {"Sid": "RuntimeRolesTag", "Effect": "Allow", "Action": "iam:TagRole", "Resource": runtime_roles},
        {
            "Sid": "RuntimeRolesPolicy",
            "Effect": "Allow",
            "Action": ["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
            "Resource": runtime_roles,
            "Condition": {"ArnEquals": {"iam:PolicyARN": runtime_policy}},
        },
        {"Sid": "RuntimeRolesDelete", "Effect": "Allow", "Action": "iam:DeleteRole", "Resource": runtime_roles},
        {"Sid": "JwtKeys", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": {"Ref": secret}},
    ]


@pytest.fixture(scope="module")
def dev_t(dev: Synth) -> dict[str, Any]:
    """The dev template as JSON, with the stack name alongside."""
    return {**dev.template_json, "_stack_name": dev.stack.stack_name, "_stage": "dev"}


@pytest.fixture(scope="module")
def prod_t(prod_existing: Synth) -> dict[str, Any]:
    """The prod (existing cluster) template as JSON, with the stack name alongside."""
    return {**prod_existing.template_json, "_stack_name": prod_existing.stack.stack_name, "_stage": "prod"}


# -- the table --------------------------------------------------------------------------------


def test_table_is_the_one_definition(dev_t: dict[str, Any]) -> None:
    props = only(dev_t, "AWS::DynamoDB::Table")[1]["Properties"]
    expected = definition.create_table_kwargs("unused")
    assert props["BillingMode"] == expected["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == expected["KeySchema"]
    assert sorted(props["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == expected["AttributeDefinitions"]
    assert sorted(props["GlobalSecondaryIndexes"], key=lambda i: i["IndexName"]) == expected["GlobalSecondaryIndexes"]
    assert props["StreamSpecification"] == {"StreamViewType": definition.STREAM_VIEW_TYPE}
    assert props["TimeToLiveSpecification"] == {"AttributeName": definition.TTL_ATTRIBUTE, "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert "TableName" not in props  # CloudFormation names it; the app learns it from SPARKGATE_TABLE


def test_prod_keeps_its_data_and_dev_cleans_up(dev_t: dict[str, Any], prod_t: dict[str, Any]) -> None:
    for resource_type in ("AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::SecretsManager::Secret"):
        assert only(prod_t, resource_type)[1]["DeletionPolicy"] == "Retain"
        assert only(dev_t, resource_type)[1]["DeletionPolicy"] == "Delete"
    assert only(prod_t, "AWS::DynamoDB::Table")[1]["Properties"]["DeletionProtectionEnabled"] is True
    # dev empties its bucket on delete so `cdk destroy` succeeds; prod never does.
    assert len([r for r in dev_t["Resources"].values() if r["Type"] == "Custom::S3AutoDeleteObjects"]) == 1
    assert not [r for r in prod_t["Resources"].values() if r["Type"] == "Custom::S3AutoDeleteObjects"]


# -- the bucket -------------------------------------------------------------------------------


def test_bucket_is_encrypted_private_and_expires_per_prefix(dev_t: dict[str, Any]) -> None:
    props = only(dev_t, "AWS::S3::Bucket")[1]["Properties"]
    assert props["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    }
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    rules = props["LifecycleConfiguration"]["Rules"]
    expiring = {r["Prefix"]: r["ExpirationInDays"] for r in rules if "ExpirationInDays" in r}
    assert expiring == {p: d for p, d in definition.BUCKET_PREFIXES.items() if d is not None}
    assert all(r["Status"] == "Enabled" for r in rules)
    # Prefixes kept forever (uploads, the engine bundle) are under no expiring rule, and no
    # rule without a prefix expires objects.
    assert all("Prefix" in r for r in rules if "ExpirationInDays" in r)
    assert {"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}.items() <= next(
        r for r in rules if "AbortIncompleteMultipartUpload" in r
    ).items()


def test_bucket_allows_tls_only(dev: Synth, dev_t: dict[str, Any]) -> None:
    bucket = logical_id(dev_t, "AWS::S3::Bucket")
    bucket_arn = {"Fn::GetAtt": [bucket, "Arn"]}
    dev.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        {
                            "Action": "s3:*",
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            "Effect": "Deny",
                            "Principal": {"AWS": "*"},
                            "Resource": [bucket_arn, {"Fn::Join": ["", [bucket_arn, "/*"]]}],
                        }
                    ]
                )
            },
        },
    )


# -- the secret -------------------------------------------------------------------------------


def test_jwt_keys_are_generated_one_kid_of_64_random_bytes(dev_t: dict[str, Any]) -> None:
    props = only(dev_t, "AWS::SecretsManager::Secret")[1]["Properties"]
    generator = props["GenerateSecretString"]
    assert generator["SecretStringTemplate"] == '{"current": "k1"}'
    assert generator["GenerateStringKey"] == "k1"
    # 128 characters from 0-9a-f: bytes.fromhex() gives 64 random bytes.
    assert generator["PasswordLength"] == 128
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789") - set(generator["ExcludeCharacters"])
    assert allowed == set("0123456789abcdef")
    assert generator["ExcludeUppercase"] is True and generator["ExcludePunctuation"] is True
    assert generator["IncludeSpace"] is False
    assert "SecretString" not in props  # nothing secret in the template


# -- the step runner --------------------------------------------------------------------------


def test_emr_cluster_runs_spark_steps_concurrently_with_the_engine_deps(dev_t: dict[str, Any]) -> None:
    _, cluster = only(dev_t, "AWS::EMR::Cluster")
    props = cluster["Properties"]
    bucket = logical_id(dev_t, "AWS::S3::Bucket")
    assert props["ReleaseLabel"].startswith("emr-7.")
    assert props["Applications"] == [{"Name": "Spark"}]
    assert props["StepConcurrencyLevel"] > 1
    assert props["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    supervisor = resource_id(dev_t, "AWS::IAM::Role", "EngineSupervisorRole")
    assert props["BootstrapActions"] == [
        {
            "Name": "install-engine-dependencies",
            "ScriptBootstrapAction": {
                "Path": {"Fn::Join": ["", ["s3://", {"Ref": bucket}, "/engine/bootstrap.sh"]]},
                "Args": [
                    "--supervisor-role-arn",
                    {"Fn::GetAtt": [supervisor, "Arn"]},
                    "--bundle",
                    {"Fn::Join": ["", ["s3://", {"Ref": bucket}, "/engine/"]]},
                    "--region",
                    REGION,
                    "--supervisor-profile",
                    "sparkgate-supervisor",
                    "--supervisor-user",
                    "hadoop",
                    "--kernel-uid-min",
                    "200000",
                ],
            },
        }
    ]
    assert props["Configurations"] == [
        {
            "Classification": "spark-env",
            "Configurations": [
                {
                    "Classification": "export",
                    "ConfigurationProperties": {
                        "PYSPARK_PYTHON": "/usr/bin/python3.11",
                        "PYSPARK_DRIVER_PYTHON": "/usr/bin/python3.11",
                    },
                }
            ],
        },
        {"Classification": "spark-defaults", "ConfigurationProperties": {"spark.authenticate": "true"}},
        {"Classification": "yarn-site", "ConfigurationProperties": {"spark.authenticate": "true"}},
    ]
    assert props["LogUri"] == {"Fn::Join": ["", ["s3://", {"Ref": bucket}, "/logs/emr/"]]}
    # The bootstrap script is uploaded before the cluster starts.
    deployment = logical_id(dev_t, "Custom::CDKBucketDeployment")
    assert deployment in cluster["DependsOn"]

    script = (INFRA_DIR / "assets" / "bootstrap.sh").read_text()
    install = next(line for line in script.splitlines() if "pip install" in line)
    assert '"$PY" -m pip install' in install and "PY=/usr/bin/python3.11" in script
    for requirement in ("'pandas<3'", "pyarrow", "shapely", "Pillow", "numpy", "boto3"):
        assert requirement in install.split()


def test_emr_roles(dev_t: dict[str, Any]) -> None:
    props = only(dev_t, "AWS::EMR::Cluster")[1]["Properties"]
    profile_id, profile = only(dev_t, "AWS::IAM::InstanceProfile")
    assert props["JobFlowRole"] == {"Ref": profile_id}
    instance_role = profile["Properties"]["Roles"][0]["Ref"]
    engine_policy = resource_id(dev_t, "AWS::IAM::ManagedPolicy", "EngineAccess")
    role = dev_t["Resources"][instance_role]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    # The nodes' policy is attached from its own side (the supervisor role trusts the instance role).
    assert "ManagedPolicyArns" not in role and "Policies" not in role
    attached = [
        k
        for k, r in dev_t["Resources"].items()
        if r["Type"] == "AWS::IAM::ManagedPolicy" and {"Ref": instance_role} in r["Properties"].get("Roles", [])
    ]
    assert attached == [engine_policy]
    service_role = props["ServiceRole"]["Ref"]
    service = dev_t["Resources"][service_role]["Properties"]
    assert service["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "elasticmapreduce.amazonaws.com"
    }
    assert service["ManagedPolicyArns"] == [
        {"Fn::Join": ["", ["arn:", PARTITION, ":iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"]]}
    ]
    pass_role = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in dev_t["Resources"].values()
        if p["Type"] == "AWS::IAM::Policy" and {"Ref": service_role} in p["Properties"]["Roles"]
    ]
    assert pass_role == [
        [
            {
                "Action": "iam:PassRole",
                "Condition": {"StringLike": {"iam:PassedToService": "ec2.amazonaws.com*"}},
                "Effect": "Allow",
                "Resource": {"Fn::GetAtt": [instance_role, "Arn"]},
            }
        ]
    ]


def test_engine_access_policy_is_the_nodes_own_not_the_table(dev_t: dict[str, Any]) -> None:
    # What it grants exactly is asserted in test_isolation.py; here: the table is not in it.
    policy = dev_t["Resources"][resource_id(dev_t, "AWS::IAM::ManagedPolicy", "EngineAccess")]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    actions = [a for st in statements for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])]
    assert not [a for a in actions if a.startswith("dynamodb:")]


def test_engine_bundle_is_uploaded_to_the_bucket(dev: Synth, dev_t: dict[str, Any], project_copy: Path) -> None:
    from stacks.engine_bundle import entry_script

    props = only(dev_t, "Custom::CDKBucketDeployment")[1]["Properties"]
    assert props["DestinationBucketName"] == {"Ref": logical_id(dev_t, "AWS::S3::Bucket")}
    assert props["DestinationBucketKeyPrefix"] == "engine/"
    # The staged asset holds the bundle zip (chalicelib at its root), its entry point and the script.
    staged = [p for p in dev.assembly_dir.glob("asset.*") if (p / "sparkgate-engine.zip").is_file()]
    assert len(staged) == 1
    assert sorted(p.name for p in staged[0].iterdir()) == [
        "bootstrap.sh",
        "credential_broker.py",
        "engine_main.py",
        "sparkgate-engine.zip",
    ]
    assert (staged[0] / "credential_broker.py").read_bytes() == (
        INFRA_DIR / "assets" / "credential_broker.py"
    ).read_bytes()
    with zipfile.ZipFile(staged[0] / "sparkgate-engine.zip") as bundle:
        names = bundle.namelist()
    assert "chalicelib/__init__.py" in names
    assert "chalicelib/store/definition.py" in names
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    assert (staged[0] / "engine_main.py").read_bytes() == entry_script(project_copy).read_bytes()
    assert "chalicelib.engine" in (INFRA_DIR / "assets" / "engine_main.py").read_text()


def test_engine_zip_is_reproducible(tmp_path: Path) -> None:
    from stacks.engine_bundle import build_engine_zip
    from synth_support import REPO_ROOT

    first = build_engine_zip(REPO_ROOT, tmp_path / "a.zip").read_bytes()
    second = build_engine_zip(REPO_ROOT, tmp_path / "b.zip").read_bytes()
    assert first == second


def test_existing_cluster_variant_creates_no_cluster(prod_t: dict[str, Any]) -> None:
    types = {r["Type"] for r in prod_t["Resources"].values()}
    assert "AWS::EMR::Cluster" not in types
    assert "AWS::IAM::InstanceProfile" not in types
    for fn in functions(prod_t).values():
        assert fn["Properties"]["Environment"]["Variables"]["SPARKGATE_EMR_CLUSTER_ID"] == EXISTING_CLUSTER_ID
    # The policy an existing cluster's instance role needs is still there, and an output.
    policy = resource_id(prod_t, "AWS::IAM::ManagedPolicy", "EngineAccess")
    assert prod_t["Outputs"]["EngineAccessPolicyArn"]["Value"] == {"Ref": policy}
    assert "Roles" not in prod_t["Resources"][policy]["Properties"]  # the operator attaches it
    assert prod_t["Outputs"]["EmrSecurityConfigurationName"]["Value"] == {
        "Ref": logical_id(prod_t, "AWS::EMR::SecurityConfiguration")
    }
    supervisor = resource_id(prod_t, "AWS::IAM::Role", "EngineSupervisorRole")
    assert prod_t["Outputs"]["EngineSupervisorRoleArn"]["Value"] == {"Fn::GetAtt": [supervisor, "Arn"]}


# -- the app ----------------------------------------------------------------------------------


def test_app_has_rest_websocket_stream_and_schedule_handlers(dev_t: dict[str, Any]) -> None:
    fns = functions(dev_t)
    assert {
        "APIHandler",
        "WebsocketConnect",
        "WebsocketMessage",
        "WebsocketDisconnect",
        "OnDynamodbRecord",
        "OnSchedule",
    } <= set(fns)
    assert fns["OnDynamodbRecord"]["Properties"]["Handler"].endswith(".on_dynamodb_record")
    assert "Events" not in fns["OnDynamodbRecord"]["Properties"]  # the stack maps the stream itself
    assert fns["OnSchedule"]["Properties"]["Events"] == {
        "OnScheduleEvent": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 minute)"}}
    }
    assert only(dev_t, "AWS::ApiGatewayV2::Api")[1]["Properties"]["ProtocolType"] == "WEBSOCKET"
    assert only(dev_t, "AWS::ApiGatewayV2::Stage")[1]["Properties"]["StageName"] == "dev"
    assert only(dev_t, "AWS::Serverless::Api")[1]["Properties"]["StageName"] == "dev"


def test_stream_feeds_the_stream_handler_with_partial_batch_failures(dev_t: dict[str, Any]) -> None:
    props = only(dev_t, "AWS::Lambda::EventSourceMapping")[1]["Properties"]
    table = logical_id(dev_t, "AWS::DynamoDB::Table")
    assert props == {
        "FunctionName": {"Ref": "OnDynamodbRecord"},
        "EventSourceArn": {"Fn::GetAtt": [table, "StreamArn"]},
        "StartingPosition": "LATEST",
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": 5,
        "MaximumRecordAgeInSeconds": 3600,
        "BatchSize": 100,
        "MaximumBatchingWindowInSeconds": 0,
        "ParallelizationFactor": 1,
    }


def test_every_function_gets_the_stage_environment(dev_t: dict[str, Any]) -> None:
    table = logical_id(dev_t, "AWS::DynamoDB::Table")
    bucket = logical_id(dev_t, "AWS::S3::Bucket")
    secret = logical_id(dev_t, "AWS::SecretsManager::Secret")
    cluster = logical_id(dev_t, "AWS::EMR::Cluster")
    ws_api = logical_id(dev_t, "AWS::ApiGatewayV2::Api")
    expected = {
        "SPARKGATE_STAGE": "dev",
        "SPARKGATE_TABLE": {"Ref": table},
        "SPARKGATE_BUCKET": {"Ref": bucket},
        "SPARKGATE_JWT_SECRET_ARN": {"Ref": secret},
        "SPARKGATE_RUNNER": "emr",
        "SPARKGATE_EMR_CLUSTER_ID": {"Ref": cluster},
        "SPARKGATE_ENGINE_URI": {"Fn::Join": ["", ["s3://", {"Ref": bucket}, "/engine/sparkgate-engine.zip"]]},
        "SPARKGATE_EMR_RUNTIME_ROLE_ARN": {
            "Fn::Join": [
                "",
                ["arn:", PARTITION, f":iam::{ACCOUNT}:role/sparkgate/dev/runtime/sparkgate-dev-rt-{{user_id}}"],
            ]
        },
        "SPARKGATE_EMR_RUNTIME_POLICY_ARN": {"Ref": resource_id(dev_t, "AWS::IAM::ManagedPolicy", "EmrRuntimeAccess")},
        "SPARKGATE_EMR_INSTANCE_ROLE_ARN": {
            "Fn::GetAtt": [resource_id(dev_t, "AWS::IAM::Role", "EmrInstanceRole"), "Arn"]
        },
        "SPARKGATE_EMR_SUPERVISOR_PROFILE": "sparkgate-supervisor",
        "SPARKGATE_WS_ENDPOINT": {
            "Fn::Join": [
                "",
                ["https://", {"Ref": ws_api}, f".execute-api.{REGION}.", {"Ref": "AWS::URLSuffix"}, "/dev"],
            ]
        },
        "SPARKGATE_CONSOLE_WS_URL": {
            "Fn::Join": [
                "",
                ["wss://", {"Ref": ws_api}, f".execute-api.{REGION}.", {"Ref": "AWS::URLSuffix"}, "/dev"],
            ]
        },
    }
    role = app_role_id(dev_t)
    for name, fn in functions(dev_t).items():
        variables = fn["Properties"]["Environment"]["Variables"]
        assert {k: v for k, v in variables.items() if k.startswith("SPARKGATE_")} == expected, name
        assert fn["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
        assert fn["Properties"]["Runtime"] == "python3.11"


# -- least privilege --------------------------------------------------------------------------


def _app_role_policies(template: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    role_id = app_role_id(template)
    role = template["Resources"][role_id]["Properties"]
    attached = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in r["Properties"]["Roles"]
    ]
    return role, attached


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_app_role_has_exactly_the_stage_resources(variant: str, dev_t: dict[str, Any], prod_t: dict[str, Any]) -> None:
    template = dev_t if variant == "dev" else prod_t
    role, attached = _app_role_policies(template)
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}
    ]
    assert "ManagedPolicyArns" not in role  # no AWS managed policy: logs are granted below, scoped
    cluster: Any = {"Ref": logical_id(template, "AWS::EMR::Cluster")} if variant == "dev" else EXISTING_CLUSTER_ID
    assert role["Policies"] == [
        {
            "PolicyName": "sparkgate",
            "PolicyDocument": {"Version": "2012-10-17", "Statement": expected_app_statements(template, cluster)},
        }
    ]
    ws_api = logical_id(template, "AWS::ApiGatewayV2::Api")
    assert len(attached) == 1
    assert attached[0]["PolicyDocument"]["Statement"] == [
        {
            "Sid": "ManageConnections",
            "Effect": "Allow",
            "Action": "execute-api:ManageConnections",
            "Resource": arn("execute-api", [{"Ref": ws_api}, "/*"]),
        }
    ]


def test_only_list_streams_has_a_wildcard_resource(dev_t: dict[str, Any]) -> None:
    role, attached = _app_role_policies(dev_t)
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    statements += [s for p in attached for s in p["PolicyDocument"]["Statement"]]
    wildcard = [
        s["Action"]
        for s in statements
        if s["Resource"] == "*" or "*" in (s["Resource"] if isinstance(s["Resource"], list) else [])
    ]
    assert wildcard == ["dynamodb:ListStreams"]
    assert not [
        s for s in statements if any("*" in a for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    ]


# -- outputs ----------------------------------------------------------------------------------


def test_stage_outputs(dev_t: dict[str, Any], dev: Synth) -> None:
    outputs = dev_t["Outputs"]
    suffix = {"Ref": "AWS::URLSuffix"}
    rest_api = logical_id(dev_t, "AWS::Serverless::Api")
    ws_api = logical_id(dev_t, "AWS::ApiGatewayV2::Api")
    assert outputs["RestApiUrl"]["Value"] == {
        "Fn::Join": ["", ["https://", {"Ref": rest_api}, f".execute-api.{REGION}.", suffix, "/dev/"]]
    }
    assert outputs["WebSocketUrl"]["Value"] == {
        "Fn::Join": ["", ["wss://", {"Ref": ws_api}, f".execute-api.{REGION}.", suffix, "/dev"]]
    }
    assert outputs["BucketName"]["Value"] == {"Ref": logical_id(dev_t, "AWS::S3::Bucket")}
    assert outputs["TableName"]["Value"] == {"Ref": logical_id(dev_t, "AWS::DynamoDB::Table")}
    assert outputs["EmrClusterId"]["Value"] == {"Ref": logical_id(dev_t, "AWS::EMR::Cluster")}
    assert dev.stack.stack_name == "sparkgate-dev"
