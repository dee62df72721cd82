"""Tenant isolation on EMR: who may reach what from the cluster (see docs/security-cloud.md).

Four principals touch the cluster, and only one of them is what user code holds:

- **a user's runtime role** (``role/sparkgate/<stage>/runtime/sparkgate-<stage>-rt-<user id>``, one per
  user, created by the app on first use, tagged ``sparkgate_user=<user id>``): what every process of a
  step (spark-submit, the driver, the executors, so the user's code) acts as. The shared
  :func:`runtime_access_policy` (attached, and the permissions boundary) reads the engine bundle and
  reads/writes ``uploads/<own id>/`` and ``results/<own id>/`` only, through
  ``${aws:PrincipalTag/sparkgate_user}``; no table, no other prefix, no STS/IAM/EMR/secrets.
- **the supervisor role** (:func:`supervisor_role`): the engine's table access. Only JOB#, SESSION#,
  KERNELUID# items and the ``kernel_uid`` counter (``dynamodb:LeadingKeys``), the session queue on gsi1,
  geo catalogs read-only, result objects written; no Scan, no USER#, CONN#, WORK#, idempotency items.
  It reaches the supervisor only through the primary node's credential broker (root, ``SO_PEERCRED``).
- **the EC2 instance role** (:func:`node_access_policy`): EMR's daemons. Reads the bundle, writes the
  EMR logs, assumes the runtime roles (EMR does that per step) and the supervisor role (the broker).
- **the app's role** (:func:`app_step_statements`): adds steps only with a runtime role of this stage
  (``elasticmapreduce:ExecutionRoleArn``) and manages those roles (bounded by the runtime policy).

No principal above can write ``engine/`` (the bundle, ``bootstrap.sh``, the broker).
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_emr as emr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3

from chalicelib.runners.emr import USER_PLACEHOLDER, USER_TAG

#: Key prefixes of the bucket (``chalicelib/store``: ``jobs.result_prefix``, geo uploads, the stack's bundle).
ENGINE_PREFIX = "engine/"
EMR_LOG_PREFIX = "logs/emr/"
UPLOADS_PREFIX = "uploads/"
RESULTS_PREFIX = "results/"
#: The IAM policy variable a runtime role's own tag fills in.
USER_VARIABLE = f"${{aws:PrincipalTag/{USER_TAG}}}"

#: The uids the engine runs kernels under start here (``chalicelib.engine.sandbox.DEFAULT_UID_BASE``).
KERNEL_UID_MIN = 200_000
#: The node user EMR runs steps (and so the supervisor) as: the only one the credential broker answers.
STEP_USER = "hadoop"
#: The AWS profile (in ``/etc/sparkgate/aws-config``) the supervisor's credentials come through.
SUPERVISOR_PROFILE = "sparkgate-supervisor"

#: What the supervisor does to table items, and the partition keys it may do it to.
SUPERVISOR_ITEM_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
SUPERVISOR_ITEM_KEYS = ["JOB#*", "SESSION#*", "KERNELUID#*", "COUNTER#kernel_uid"]
#: Actions no runtime role may ever be granted (explicit denies in its policy, which is also its boundary).
RUNTIME_DENIED = [
    "dynamodb:*",
    "elasticmapreduce:*",
    "execute-api:*",
    "iam:*",
    "lambda:*",
    "secretsmanager:*",
    "sts:*",
]
#: S3 object actions a runtime role has on its user's own prefixes.
OWN_OBJECT_ACTIONS = ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
#: The EMR security configuration: runtime roles on, IMDSv2 only, one network hop.
SECURITY_CONFIGURATION: dict[str, Any] = {
    "AuthorizationConfiguration": {"IAMConfiguration": {"EnableApplicationScopedIAMRole": True}},
    "InstanceMetadataServiceConfiguration": {"MinimumInstanceMetadataServiceVersion": 2, "HttpPutResponseHopLimit": 1},
}


def runtime_role_path(stage: str) -> str:
    """The IAM path of the stage's runtime roles."""
    return f"/sparkgate/{stage}/runtime/"


def runtime_role_name(stage: str, user: str = USER_PLACEHOLDER) -> str:
    """A runtime role's name (IAM names are per account: the stage is part of it)."""
    return f"sparkgate-{stage}-rt-{user}"


def runtime_roles_arn(stack: cdk.Stack, stage: str) -> str:
    """``arn:…:iam::<account>:role/sparkgate/<stage>/runtime/*``: every runtime role of the stage."""
    return stack.format_arn(service="iam", region="", resource="role", resource_name=f"{runtime_role_path(stage)[1:]}*")


def runtime_role_arn_template(stack: cdk.Stack, stage: str) -> str:
    """The runtime role ARN with ``{user_id}`` left in (``SPARKGATE_EMR_RUNTIME_ROLE_ARN``)."""
    name = runtime_role_path(stage)[1:] + runtime_role_name(stage)
    return stack.format_arn(service="iam", region="", resource="role", resource_name=name)


def runtime_access_policy(stack: cdk.Stack, stage: str, bucket: s3.IBucket) -> iam.ManagedPolicy:
    """What a step (so the user's code) may do: its own user's prefixes and reading the engine bundle.

    One managed policy for all users (``${aws:PrincipalTag/sparkgate_user}`` is the role's tag); the
    app attaches it to every runtime role and makes it the role's permissions boundary, so nothing
    attached later can widen a runtime role beyond it.
    """
    own = [f"{prefix}{USER_VARIABLE}/*" for prefix in (UPLOADS_PREFIX, RESULTS_PREFIX)]
    return iam.ManagedPolicy(
        stack,
        "EmrRuntimeAccess",
        description=f"sparkgate {stage}: what a user's EMR steps may do (attached to and bounding every runtime role)",
        statements=[
            iam.PolicyStatement(
                sid="ReadEngineBundle",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{ENGINE_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="OwnObjects", actions=OWN_OBJECT_ACTIONS, resources=[bucket.arn_for_objects(key) for key in own]
            ),
            iam.PolicyStatement(
                sid="ListOwnPrefixes",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [*own, f"{ENGINE_PREFIX}*"]}},
            ),
            iam.PolicyStatement(sid="BucketLocation", actions=["s3:GetBucketLocation"], resources=[bucket.bucket_arn]),
            iam.PolicyStatement(
                sid="NeverTheEngineBundle",
                effect=iam.Effect.DENY,
                actions=["s3:DeleteObject", "s3:PutObject"],
                resources=[bucket.arn_for_objects(f"{ENGINE_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="NeverThePlatform", effect=iam.Effect.DENY, actions=RUNTIME_DENIED, resources=["*"]
            ),
        ],
    )


def supervisor_role(
    stack: cdk.Stack, stage: str, table: dynamodb.ITable, bucket: s3.IBucket, instance_role_arn: str
) -> iam.Role:
    """The engine supervisor's table access, assumed by the instance role for the credential broker only."""
    table_arn = table.table_arn
    statements = [
        iam.PolicyStatement(
            sid="JobsSessionsKernelUids",
            actions=SUPERVISOR_ITEM_ACTIONS,
            resources=[table_arn],
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": SUPERVISOR_ITEM_KEYS}},
        ),
        iam.PolicyStatement(
            sid="SessionQueue",
            actions=["dynamodb:Query"],
            resources=[f"{table_arn}/index/gsi1"],
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["SESSIONQ#*"]}},
        ),
        iam.PolicyStatement(
            sid="GeoCatalogRead",
            actions=["dynamodb:Query"],
            resources=[table_arn],
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["SCOPE#*"]}},
        ),
        iam.PolicyStatement(
            sid="WriteResults", actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{RESULTS_PREFIX}*")]
        ),
    ]
    return iam.Role(
        stack,
        "EngineSupervisorRole",
        assumed_by=iam.ArnPrincipal(instance_role_arn),
        description=f"sparkgate {stage}: the engine supervisor (via the primary node's credential broker)",
        max_session_duration=cdk.Duration.hours(1),
        inline_policies={"supervisor": iam.PolicyDocument(statements=statements)},
    )


def node_access_policy(
    stack: cdk.Stack, stage: str, bucket: s3.IBucket, supervisor: iam.IRole, runtime_roles: str
) -> iam.ManagedPolicy:
    """The EC2 instance role's policy: EMR's own daemons, the runtime roles and the broker's role.

    Attached to the instance role of the cluster made here; with an existing cluster, attach it
    to that cluster's EC2 instance role (its ARN is the ``EngineAccessPolicyArn`` output).
    """
    return iam.ManagedPolicy(
        stack,
        "EngineAccess",
        description=f"sparkgate {stage}: the EMR nodes' own access (bundle, logs, runtime and supervisor roles)",
        statements=[
            iam.PolicyStatement(
                sid="ReadEngineBundle",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{ENGINE_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="WriteClusterLogs",
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects(f"{EMR_LOG_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="ListBundleAndLogs",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{ENGINE_PREFIX}*", f"{EMR_LOG_PREFIX}*"]}},
            ),
            iam.PolicyStatement(
                sid="AssumeRuntimeRoles", actions=["sts:AssumeRole", "sts:TagSession"], resources=[runtime_roles]
            ),
            iam.PolicyStatement(
                sid="AssumeSupervisorRole", actions=["sts:AssumeRole"], resources=[supervisor.role_arn]
            ),
        ],
    )


def security_configuration(stack: cdk.Stack) -> emr.CfnSecurityConfiguration:
    """Runtime roles for steps, IMDSv2 only with a hop limit of 1 (see :data:`SECURITY_CONFIGURATION`)."""
    return emr.CfnSecurityConfiguration(
        stack, "EmrSecurityConfiguration", security_configuration=json.loads(json.dumps(SECURITY_CONFIGURATION))
    )


def app_step_statements(
    stack: cdk.Stack, stage: str, cluster_arn: str, runtime_policy: iam.IManagedPolicy
) -> list[iam.PolicyStatement]:
    """The app role's EMR and IAM statements: steps only under this stage's runtime roles, and those roles."""
    roles = runtime_roles_arn(stack, stage)
    policy_arn = runtime_policy.managed_policy_arn
    return [
        iam.PolicyStatement(
            sid="StepRunner",
            actions=["elasticmapreduce:CancelSteps", "elasticmapreduce:DescribeStep"],
            resources=[cluster_arn],
        ),
        iam.PolicyStatement(
            sid="AddStepsUnderRuntimeRoles",
            actions=["elasticmapreduce:AddJobFlowSteps"],
            resources=[cluster_arn],
            # A step without ExecutionRoleArn has no value for the key, so this never matches it.
            conditions={"ArnLike": {"elasticmapreduce:ExecutionRoleArn": roles}},
        ),
        iam.PolicyStatement(sid="RuntimeRolesRead", actions=["iam:GetRole"], resources=[roles]),
        iam.PolicyStatement(
            sid="RuntimeRolesCreate",
            actions=["iam:CreateRole"],
            resources=[roles],
            conditions={"StringEquals": {"iam:PermissionsBoundary": policy_arn}},
        ),
        iam.PolicyStatement(sid="RuntimeRolesTag", actions=["iam:TagRole"], resources=[roles]),
        iam.PolicyStatement(
            sid="RuntimeRolesPolicy",
            actions=["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
            resources=[roles],
            conditions={"ArnEquals": {"iam:PolicyARN": policy_arn}},
        ),
        iam.PolicyStatement(sid="RuntimeRolesDelete", actions=["iam:DeleteRole"], resources=[roles]),
    ]
