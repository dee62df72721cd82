"""Offline synthesis of the sparkgate stack (used by conftest.py, once per test session).

Synthesis runs ``chalice package`` on the project, which imports ``app.py``. To stay offline it
packages a copy of the project without ``requirements.txt`` (pip would download the Lambda's
dependencies from PyPI); the CloudFormation template does not depend on those wheels.
``chalice package`` also exports the stage's environment variables into ``os.environ`` (put back
afterwards) and imports ``app`` (left in ``sys.modules``: the app registers module-level blueprints,
so importing ``app.py`` a second time in one process would register every route twice).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
for _path in (str(INFRA_DIR), str(REPO_ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

ACCOUNT = "123456789012"
REGION = "us-east-1"
EXISTING_CLUSTER_ID = "j-2AXXXXXXGAPLF"
EXISTING_INSTANCE_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/existing-emr-ec2-role"


@dataclass
class Synth:
    """One synthesized stage: its template and where the cloud assembly was written."""

    stack: Any
    template: Any  # aws_cdk.assertions.Template
    template_json: dict[str, Any]
    template_path: Path
    assembly_dir: Path


def copy_project(target: Path) -> Path:
    """Copy what ``chalice package`` reads (app, ``chalicelib``, ``.chalice``) without requirements."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "deployments", "deployed")
    target.mkdir(parents=True)
    for path in REPO_ROOT.glob("*.py"):
        shutil.copy2(path, target / path.name)
    for name in ("chalicelib", ".chalice", "vendor"):
        if (REPO_ROOT / name).is_dir():
            shutil.copytree(REPO_ROOT / name, target / name, ignore=ignore)
    return target


def synthesize(workdir: Path, source_dir: Path, context: dict[str, str]) -> Synth:
    """Synthesize one stage in ``workdir`` and leave the process as it found it."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Template
    from stacks.stage import build, settings_from_context

    saved_environ = dict(os.environ)
    saved_path = list(sys.path)
    saved_cwd = Path.cwd()
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)  # the Chalice construct writes chalice.out/ into the working directory
    try:
        app = cdk.App(outdir=str(workdir / "cdk.out"), context=context)
        stack = build(
            app, settings_from_context(app, source_dir=source_dir), env=cdk.Environment(account=ACCOUNT, region=REGION)
        )
        assembly = app.synth()
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_environ)
        sys.path[:] = saved_path
    template_path = Path(assembly.get_stack_artifact(stack.artifact_id).template_full_path)
    return Synth(
        stack=stack,
        template=Template.from_stack(stack),
        template_json=json.loads(template_path.read_text()),
        template_path=template_path,
        assembly_dir=Path(assembly.directory),
    )
