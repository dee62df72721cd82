"""Stage settings from the CDK context, and the stack of one stage."""

from __future__ import annotations

import os
from pathlib import Path

import aws_cdk as cdk

from .sparkgate_stack import SparkgateStack, StageSettings

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
STAGES = ("dev", "prod")


def settings_from_context(app: cdk.App, source_dir: Path = REPO_ROOT) -> StageSettings:
    """Read the stage settings from the CDK context."""

    def context(key: str) -> str | None:
        value = app.node.try_get_context(key)
        return None if value in (None, "") else str(value)

    stage = context("stage") or "dev"
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
    defaults = StageSettings(stage=stage, source_dir=source_dir)
    return StageSettings(
        stage=stage,
        source_dir=source_dir,
        existing_cluster_id=context("existingClusterId"),
        existing_instance_role_arn=context("existingInstanceRoleArn"),
        emr_subnet_id=context("emrSubnetId"),
        emr_release_label=context("emrReleaseLabel") or defaults.emr_release_label,
        emr_instance_type=context("emrInstanceType") or defaults.emr_instance_type,
        emr_core_instances=int(context("emrCoreInstances") or defaults.emr_core_instances),
        step_concurrency=int(context("stepConcurrency") or defaults.step_concurrency),
    )


def build(app: cdk.App, settings: StageSettings, env: cdk.Environment | None = None) -> SparkgateStack:
    """Add the stage's stack to ``app``.

    The stack's construct id is the stage name, because the Chalice construct packages the app
    for the stage named by its scope: ``.chalice/config.json``'s ``stages.<stage>`` applies.
    """
    if env is None:
        env = cdk.Environment(
            account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
            region=os.environ.get("CDK_DEFAULT_REGION")
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION"),
        )
    if env.region:
        # `chalice package` creates a botocore client that needs a region.
        os.environ.setdefault("AWS_DEFAULT_REGION", env.region)
    return SparkgateStack(
        app,
        settings.stage,
        settings=settings,
        stack_name=f"sparkgate-{settings.stage}",
        description=f"sparkgate {settings.stage}: serverless gateway to Spark",
        env=env,
    )
