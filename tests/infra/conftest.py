"""Session fixtures: the synthesized stages (see synth_support.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from synth_support import EXISTING_CLUSTER_ID, EXISTING_INSTANCE_ROLE_ARN, REPO_ROOT, Synth, copy_project, synthesize


@pytest.fixture(scope="session")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project as ``chalice package`` sees it (see the module docstring)."""
    override = os.environ.get("SPARKGATE_INFRA_SOURCE_DIR")
    source = Path(override) if override else REPO_ROOT
    if not (source / "app.py").is_file():
        pytest.fail(f"no Chalice app at {source}/app.py")
    if override:
        return source
    return copy_project(tmp_path_factory.mktemp("project") / "sparkgate")


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory, project_copy: Path) -> Iterator[Synth]:
    """The ``dev`` stage with a new EMR cluster."""
    yield synthesize(tmp_path_factory.mktemp("synth-dev"), project_copy, {"stage": "dev"})


@pytest.fixture(scope="session")
def prod_existing(tmp_path_factory: pytest.TempPathFactory, project_copy: Path) -> Iterator[Synth]:
    """The ``prod`` stage on an existing EMR cluster."""
    yield synthesize(
        tmp_path_factory.mktemp("synth-prod"),
        project_copy,
        {
            "stage": "prod",
            "existingClusterId": EXISTING_CLUSTER_ID,
            "existingInstanceRoleArn": EXISTING_INSTANCE_ROLE_ARN,
        },
    )
