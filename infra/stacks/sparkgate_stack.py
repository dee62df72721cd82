"""The sparkgate stage stack: table, bucket, JWT secret, EMR step runner and the Chalice app.

One stack per stage (``dev``, ``prod``). The table and the bucket are built from
``chalicelib/store/definition.py``, the same definition the local stack creates its embedded
table and bucket from. The Chalice app (REST API, WebSocket API, stream and schedule handlers)
is packaged by ``chalice.cdk.Chalice`` and runs under a least-privilege role made here. What code on
the cluster may reach (per-user runtime roles, the supervisor role, the nodes' own access, the EMR
security configuration) is built by ``isolation.py``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_emr as emr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from chalicelib.runners import emr as emr_runner
from chalicelib.store import definition

from . import isolation
from .engine_bundle import BOOTSTRAP_SCRIPT, ENGINE_ZIP, stage_engine_assets

#: Key prefix of the engine bundle in the bucket (kept forever by the lifecycle rules).
ENGINE_PREFIX = isolation.ENGINE_PREFIX
#: Where EMR writes its cluster and step logs (under ``logs/``, so they expire with the logs).
EMR_LOG_PREFIX = isolation.EMR_LOG_PREFIX

#: The Python the engine runs on EMR (installed by the bootstrap action; EMR 7's python3 is 3.9).
ENGINE_PYTHON = "/usr/bin/python3.11"

#: Logical ids of the resources ``chalice package`` generates for the app's handlers.
STREAM_FUNCTION = "OnDynamodbRecord"
SCHEDULE_FUNCTION = "OnSchedule"
REST_API = "RestAPI"
WEBSOCKET_API = "WebsocketAPI"

#: What ``app.py`` must define for the stack to wire it (logical id -> where it comes from).
REQUIRED_APP_RESOURCES = {
    REST_API: "any @app.route",
    WEBSOCKET_API: "@app.on_ws_connect/on_ws_message/on_ws_disconnect and the WEBSOCKETS feature flag",
    STREAM_FUNCTION: "@app.lambda_function(name='on_dynamodb_record')",
    SCHEDULE_FUNCTION: "@app.schedule(Rate(1, unit=Rate.MINUTES)) def on_schedule",
}

#: The first key id of the generated JWT signing secret.
INITIAL_KID = "k1"

#: What the Lambda role may do to the table and its indexes: exactly the calls the app's code makes
#: (``chalicelib/store``; a TransactWriteItems needs the Put/Update/DeleteItem of its parts). No Scan,
#: no DescribeTable: only the local stack's snapshot and provisioning use those (tests/infra asserts it).
TABLE_ACTIONS = [
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
]
#: What the stream event source mapping needs on the table's stream.
STREAM_ACTIONS = [
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
]
#: What the Lambda role may do to objects in the bucket: single-part puts and gets (results, logs,
#: pages); objects go by the bucket's lifecycle rules, except a user's own uploads, which they delete
#: (``DELETE /api/v1/files/...``): DeleteObject is granted on ``uploads/*`` only.
OBJECT_ACTIONS = [
    "s3:GetObject",
    "s3:PutObject",
]
UPLOAD_DELETE_ACTIONS = ["s3:DeleteObject"]


@dataclass(frozen=True)
class StageSettings:
    """What differs between deployments of the stack."""

    #: The sparkgate stage (``dev``, ``prod``); also the Chalice stage and API Gateway stage.
    stage: str
    #: The Chalice project: the directory holding ``app.py``, ``chalicelib/`` and ``.chalice/``.
    source_dir: Path
    #: Use this running EMR cluster instead of creating one.
    existing_cluster_id: str | None = None
    #: That cluster's EC2 instance role (required with it): the runtime and supervisor roles trust it.
    existing_instance_role_arn: str | None = None
    #: Subnet for the new cluster (None: the account's default VPC).
    emr_subnet_id: str | None = None
    emr_release_label: str = "emr-7.9.0"
    emr_instance_type: str = "m5.xlarge"
    emr_core_instances: int = 2
    #: How many steps (engine drivers) the cluster runs at once.
    step_concurrency: int = 10

    @property
    def is_production(self) -> bool:
        """True on ``prod``, where data outlives the stack."""
        return self.stage == "prod"


class SparkgateStack(cdk.Stack):
    """Everything one sparkgate stage runs on."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: StageSettings, **kwargs: Any) -> None:
        """Build the stage. ``construct_id`` must equal ``settings.stage``: it names the Chalice stage."""
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings
        removal = cdk.RemovalPolicy.RETAIN if settings.is_production else cdk.RemovalPolicy.DESTROY

        self.table = self._table(removal)
        self.bucket = self._bucket(removal)
        self.secret = self._jwt_secret(removal)
        self.engine_deployment = self._engine_bundle()
        self.engine_uri = f"s3://{self.bucket.bucket_name}/{ENGINE_PREFIX}{ENGINE_ZIP}"
        self.instance_role: iam.Role | None = None
        if settings.existing_cluster_id:
            if not settings.existing_instance_role_arn:
                raise ValueError(
                    "existingClusterId needs existingInstanceRoleArn (that cluster's EC2 instance role): "
                    "the runtime and supervisor roles trust it; see docs/security-cloud.md"
                )
            self.instance_role_arn = settings.existing_instance_role_arn
        else:
            self.instance_role = iam.Role(
                self,
                "EmrInstanceRole",
                assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
                description="sparkgate EMR nodes (EC2 instance profile)",
            )
            self.instance_role_arn = self.instance_role.role_arn
        self._isolation()
        self.cluster: emr.CfnCluster | None = None
        if settings.existing_cluster_id:
            self.cluster_id = settings.existing_cluster_id
        else:
            self.cluster = self._emr_cluster()
            self.cluster_id = self.cluster.ref
        self.cluster_arn = self.format_arn(
            service="elasticmapreduce", resource="cluster", resource_name=self.cluster_id
        )
        self.lambda_role = self._lambda_role()
        self.chalice = self._chalice_app()
        self._outputs()

    # -- state -----------------------------------------------------------------------------

    def _table(self, removal: cdk.RemovalPolicy) -> dynamodb.Table:
        """The single table, from ``chalicelib.store.definition``."""
        table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=definition.PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=definition.SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            stream=dynamodb.StreamViewType(definition.STREAM_VIEW_TYPE),
            time_to_live_attribute=definition.TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=self.settings.is_production,
            removal_policy=removal,
        )
        for name, (pk, sk) in definition.INDEXES.items():
            table.add_global_secondary_index(
                index_name=name,
                partition_key=dynamodb.Attribute(name=pk, type=dynamodb.AttributeType.STRING),
                sort_key=dynamodb.Attribute(name=sk, type=dynamodb.AttributeType.STRING),
                projection_type=dynamodb.ProjectionType.ALL,
            )
        return table

    def _bucket(self, removal: cdk.RemovalPolicy) -> s3.Bucket:
        """The single bucket: encrypted, private, TLS only, prefixes expiring per the definition."""
        rules = [
            s3.LifecycleRule(
                id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=cdk.Duration.days(7)
            )
        ]
        for prefix, days in definition.BUCKET_PREFIXES.items():
            if days is not None:
                rules.append(
                    s3.LifecycleRule(
                        id=f"expire-{prefix.strip('/')}", prefix=prefix, expiration=cdk.Duration.days(days)
                    )
                )
        return s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=rules,
            removal_policy=removal,
            auto_delete_objects=not self.settings.is_production,
        )

    def _jwt_secret(self, removal: cdk.RemovalPolicy) -> secretsmanager.Secret:
        """JWT signing keys: ``{"current": "k1", "k1": "<128 hex digits = 64 random bytes>"}``."""
        return secretsmanager.Secret(
            self,
            "JwtSigningKeys",
            description=f"sparkgate {self.settings.stage}: JWT (HS512) signing keys by kid; 'current' names the signer",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=f'{{"current": "{INITIAL_KID}"}}',
                generate_string_key=INITIAL_KID,
                password_length=128,
                # Hex digits only: the value decodes to 64 random bytes with bytes.fromhex().
                exclude_uppercase=True,
                exclude_punctuation=True,
                exclude_characters="ghijklmnopqrstuvwxyz",
                include_space=False,
                require_each_included_type=False,
            ),
            removal_policy=removal,
        )

    # -- step runner -----------------------------------------------------------------------

    def _engine_bundle(self) -> s3deploy.BucketDeployment:
        """Upload the engine zip, its spark-submit entry point and the EMR bootstrap script."""
        staging = Path(tempfile.mkdtemp(prefix="sparkgate-engine-"))
        stage_engine_assets(self.settings.source_dir, staging)
        return s3deploy.BucketDeployment(
            self,
            "EngineBundle",
            sources=[s3deploy.Source.asset(str(staging))],
            destination_bucket=self.bucket,
            destination_key_prefix=ENGINE_PREFIX,
            prune=True,
            retain_on_delete=False,
        )

    def _isolation(self) -> None:
        """Per-user runtime roles' policy, the supervisor role, the nodes' policy, the security configuration."""
        stage = self.settings.stage
        self.runtime_policy = isolation.runtime_access_policy(self, stage, self.bucket)
        self.supervisor_role = isolation.supervisor_role(self, stage, self.table, self.bucket, self.instance_role_arn)
        self.engine_access_policy = isolation.node_access_policy(
            self, stage, self.bucket, self.supervisor_role, isolation.runtime_roles_arn(self, stage)
        )
        if self.instance_role is not None:
            # Attached from the policy's side: the supervisor role trusts the instance role, so the
            # instance role must not depend on a policy that names the supervisor role.
            self.engine_access_policy.attach_to_role(self.instance_role)
        self.security_configuration = isolation.security_configuration(self)

    def _emr_cluster(self) -> emr.CfnCluster:
        """A long-running Spark cluster that runs several engine drivers (steps) at once."""
        settings = self.settings
        instance_role = self.instance_role
        assert instance_role is not None, "a new cluster has its own instance role"
        instance_profile = iam.CfnInstanceProfile(self, "EmrInstanceProfile", roles=[instance_role.role_name])
        service_role = iam.Role(
            self,
            "EmrServiceRole",
            assumed_by=iam.ServicePrincipal("elasticmapreduce.amazonaws.com"),
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AmazonEMRServicePolicy_v2")],
            description="sparkgate EMR service role",
        )
        # The v2 managed policy only passes the default EMR_EC2_DefaultRole; pass ours.
        pass_role = iam.Policy(
            self,
            "EmrPassInstanceRole",
            roles=[service_role],
            statements=[
                iam.PolicyStatement(
                    actions=["iam:PassRole"],
                    resources=[instance_role.role_arn],
                    conditions={"StringLike": {"iam:PassedToService": "ec2.amazonaws.com*"}},
                )
            ],
        )
        bucket_name = self.bucket.bucket_name
        cluster = emr.CfnCluster(
            self,
            "SparkCluster",
            name=f"sparkgate-{settings.stage}",
            release_label=settings.emr_release_label,
            applications=[emr.CfnCluster.ApplicationProperty(name="Spark")],
            job_flow_role=instance_profile.ref,
            service_role=service_role.role_name,
            visible_to_all_users=True,
            log_uri=f"s3://{bucket_name}/{EMR_LOG_PREFIX}",
            step_concurrency_level=settings.step_concurrency,
            security_configuration=self.security_configuration.ref,
            configurations=[
                emr.CfnCluster.ConfigurationProperty(
                    classification="spark-env",
                    configurations=[
                        emr.CfnCluster.ConfigurationProperty(
                            classification="export",
                            configuration_properties={
                                "PYSPARK_PYTHON": ENGINE_PYTHON,
                                "PYSPARK_DRIVER_PYTHON": ENGINE_PYTHON,
                            },
                        )
                    ],
                ),
                # Every application gets its own secret (YARN distributes it): no tenant's code can
                # talk to another tenant's driver, executors or shuffle blocks.
                emr.CfnCluster.ConfigurationProperty(
                    classification="spark-defaults", configuration_properties={"spark.authenticate": "true"}
                ),
                emr.CfnCluster.ConfigurationProperty(
                    classification="yarn-site", configuration_properties={"spark.authenticate": "true"}
                ),
            ],
            bootstrap_actions=[
                emr.CfnCluster.BootstrapActionConfigProperty(
                    name="install-engine-dependencies",
                    script_bootstrap_action=emr.CfnCluster.ScriptBootstrapActionConfigProperty(
                        path=f"s3://{bucket_name}/{ENGINE_PREFIX}{BOOTSTRAP_SCRIPT}",
                        args=self.bootstrap_args(),
                    ),
                )
            ],
            instances=emr.CfnCluster.JobFlowInstancesConfigProperty(
                keep_job_flow_alive_when_no_steps=True,
                termination_protected=False,
                ec2_subnet_id=settings.emr_subnet_id,
                master_instance_group=emr.CfnCluster.InstanceGroupConfigProperty(
                    instance_count=1, instance_type=settings.emr_instance_type, market="ON_DEMAND", name="primary"
                ),
                core_instance_group=emr.CfnCluster.InstanceGroupConfigProperty(
                    instance_count=settings.emr_core_instances,
                    instance_type=settings.emr_instance_type,
                    market="ON_DEMAND",
                    name="core",
                ),
            ),
            tags=[cdk.CfnTag(key="for-use-with-amazon-emr-managed-policies", value="true")],
        )
        # The bootstrap script must be in the bucket before the nodes start, the service role's
        # PassRole grant must exist before EMR passes the instance role, and the nodes need their
        # policy (attached from the policy's side) to fetch the bootstrap script.
        cluster.node.add_dependency(self.engine_deployment)
        cluster.node.add_dependency(pass_role)
        cluster.node.add_dependency(self.engine_access_policy)
        return cluster

    def bootstrap_args(self) -> list[str]:
        """``bootstrap.sh``'s arguments (also what an existing cluster's bootstrap action must pass)."""
        return [
            "--supervisor-role-arn",
            self.supervisor_role.role_arn,
            "--bundle",
            f"s3://{self.bucket.bucket_name}/{ENGINE_PREFIX}",
            "--region",
            self.region,
            "--supervisor-profile",
            isolation.SUPERVISOR_PROFILE,
            "--supervisor-user",
            isolation.STEP_USER,
            "--kernel-uid-min",
            str(isolation.KERNEL_UID_MIN),
        ]

    # -- the app ---------------------------------------------------------------------------

    def _lambda_role(self) -> iam.Role:
        """The one role all the app's functions run under (``manage_iam_role: false``)."""
        logs_arn = self.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"/aws/lambda/{self.stack_name}-*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        table_arn = self.table.table_arn
        stream_arn = self.table.table_stream_arn
        assert stream_arn is not None, "the table has a stream"
        statements = [
            iam.PolicyStatement(sid="Logs", actions=["logs:CreateLogGroup"], resources=[logs_arn]),
            iam.PolicyStatement(
                sid="LogEvents",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[f"{logs_arn}:log-stream:*"],
            ),
            iam.PolicyStatement(sid="Table", actions=TABLE_ACTIONS, resources=[table_arn, f"{table_arn}/index/*"]),
            iam.PolicyStatement(sid="TableStream", actions=STREAM_ACTIONS, resources=[stream_arn]),
            # ListStreams has no resource-level permissions: AWS requires "*".
            iam.PolicyStatement(sid="ListStreams", actions=["dynamodb:ListStreams"], resources=["*"]),
            iam.PolicyStatement(
                sid="BucketObjects", actions=OBJECT_ACTIONS, resources=[self.bucket.arn_for_objects("*")]
            ),
            iam.PolicyStatement(
                sid="BucketUploadsDelete",
                actions=UPLOAD_DELETE_ACTIONS,
                resources=[self.bucket.arn_for_objects("uploads/*")],
            ),
            iam.PolicyStatement(sid="BucketList", actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn]),
            *isolation.app_step_statements(self, self.settings.stage, self.cluster_arn, self.runtime_policy),
            iam.PolicyStatement(
                sid="JwtKeys", actions=["secretsmanager:GetSecretValue"], resources=[self.secret.secret_arn]
            ),
        ]
        return iam.Role(
            self,
            "AppRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"sparkgate {self.settings.stage}: the Chalice app's functions",
            inline_policies={"sparkgate": iam.PolicyDocument(statements=statements)},
        )

    def _stage_config(self) -> dict[str, Any]:
        """The Chalice stage configuration; it overrides ``.chalice/config.json`` for this stage."""
        return {
            "api_gateway_stage": self.settings.stage,
            "manage_iam_role": False,
            "iam_role_arn": self.lambda_role.role_arn,
            "environment_variables": {
                "SPARKGATE_STAGE": self.settings.stage,
                "SPARKGATE_TABLE": self.table.table_name,
                "SPARKGATE_BUCKET": self.bucket.bucket_name,
                "SPARKGATE_JWT_SECRET_ARN": self.secret.secret_arn,
                "SPARKGATE_RUNNER": "emr",
                "SPARKGATE_EMR_CLUSTER_ID": self.cluster_id,
                "SPARKGATE_ENGINE_URI": self.engine_uri,
                emr_runner.RUNTIME_ROLE_ENV: isolation.runtime_role_arn_template(self, self.settings.stage),
                emr_runner.RUNTIME_POLICY_ENV: self.runtime_policy.managed_policy_arn,
                emr_runner.INSTANCE_ROLE_ENV: self.instance_role_arn,
                emr_runner.SUPERVISOR_PROFILE_ENV: isolation.SUPERVISOR_PROFILE,
            },
        }

    def _chalice_app(self) -> Any:
        """Package the Chalice app and wire what Chalice cannot: the stream and the WebSocket push."""
        from chalice.cdk import Chalice  # imported late: it is heavy and needs the region set

        app = Chalice(self, "App", source_dir=str(self.settings.source_dir), stage_config=self._stage_config())
        # The Chalice construct names its stage after its scope's path, i.e. this stack's id.
        if app.stage_name != self.settings.stage:
            raise ValueError(f"the stack's construct id must be the stage name {self.settings.stage!r}")
        self._require_handlers(app)

        ws_api_id = app.get_resource(WEBSOCKET_API).ref
        self.ws_endpoint = f"https://{ws_api_id}.execute-api.{self.region}.{self.url_suffix}/{self.settings.stage}"
        # the console (chalicelib/console, served by the API at /console) connects its page here
        self.ws_url = f"wss://{ws_api_id}.execute-api.{self.region}.{self.url_suffix}/{self.settings.stage}"
        for function in self.app_functions(app):
            app.add_environment_variable("SPARKGATE_WS_ENDPOINT", self.ws_endpoint, function)
            app.add_environment_variable("SPARKGATE_CONSOLE_WS_URL", self.ws_url, function)

        iam.Policy(
            self,
            "AppWebSocketPush",
            roles=[self.lambda_role],
            statements=[
                iam.PolicyStatement(
                    sid="ManageConnections",
                    actions=["execute-api:ManageConnections"],
                    resources=[self.format_arn(service="execute-api", resource=ws_api_id, resource_name="*")],
                )
            ],
        )

        stream_function = app.get_resource(STREAM_FUNCTION)
        lambda_.CfnEventSourceMapping(
            self,
            "TableStreamToApp",
            function_name=stream_function.ref,
            event_source_arn=self.table.table_stream_arn,
            starting_position="LATEST",
            batch_size=100,
            maximum_batching_window_in_seconds=0,
            bisect_batch_on_function_error=True,
            maximum_retry_attempts=5,
            maximum_record_age_in_seconds=3600,
            parallelization_factor=1,
            function_response_types=["ReportBatchItemFailures"],
        )
        return app

    @staticmethod
    def _require_handlers(app: Any) -> None:
        """Fail with a clear message when ``app.py`` lacks a handler the stack wires up."""
        generated = {child.node.id for child in app.sam_template.node.children}
        missing = [
            f"{resource} ({what})" for resource, what in REQUIRED_APP_RESOURCES.items() if resource not in generated
        ]
        if missing:
            raise ValueError(
                f"`chalice package` of {app.source_dir} generated no {', '.join(missing)}: "
                "see docs/deploy.md, 'What the app must define'"
            )

    @staticmethod
    def app_functions(app: Any) -> list[str]:
        """Logical ids of every Lambda function ``chalice package`` generated."""
        names = []
        for child in app.sam_template.node.children:
            if isinstance(child, cdk.CfnResource) and child.cfn_resource_type == "AWS::Serverless::Function":
                names.append(child.node.id)
        return sorted(names)

    # -- outputs ---------------------------------------------------------------------------

    def _outputs(self) -> None:
        """What clients and operators need to reach the stage."""
        rest_api_id = self.chalice.get_resource(REST_API).ref
        ws_api_id = self.chalice.get_resource(WEBSOCKET_API).ref
        stage = self.settings.stage
        cdk.CfnOutput(
            self, "RestApiUrl", value=f"https://{rest_api_id}.execute-api.{self.region}.{self.url_suffix}/{stage}/"
        )
        cdk.CfnOutput(
            self, "WebSocketUrl", value=f"wss://{ws_api_id}.execute-api.{self.region}.{self.url_suffix}/{stage}"
        )
        cdk.CfnOutput(
            self,
            "ConsoleUrl",
            value=f"https://{rest_api_id}.execute-api.{self.region}.{self.url_suffix}/{stage}/console/",
            description="The web console (docs/console.md), served by the API itself",
        )
        cdk.CfnOutput(self, "BucketName", value=self.bucket.bucket_name)
        cdk.CfnOutput(self, "TableName", value=self.table.table_name)
        cdk.CfnOutput(self, "JwtSecretArn", value=self.secret.secret_arn)
        cdk.CfnOutput(self, "EmrClusterId", value=self.cluster_id)
        cdk.CfnOutput(self, "EngineUri", value=self.engine_uri)
        cdk.CfnOutput(
            self,
            "EngineAccessPolicyArn",
            value=self.engine_access_policy.managed_policy_arn,
            description="Attach to the EC2 instance role of an existing cluster",
        )
        cdk.CfnOutput(
            self,
            "EmrSecurityConfigurationName",
            value=self.security_configuration.ref,
            description="An existing cluster must have been created with this security configuration",
        )
        cdk.CfnOutput(
            self,
            "EngineSupervisorRoleArn",
            value=self.supervisor_role.role_arn,
            description="bootstrap.sh --supervisor-role-arn on an existing cluster",
        )
