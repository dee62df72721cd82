"""cfn-lint finds no error in the synthesized templates (warnings are allowed).

No rule is ignored. The warnings it reports today are W3005 ("dependency already enforced") on
resources CDK itself generates (the custom resource providers of BucketDeployment and of the
bucket's auto-delete): not ours to change.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from synth_support import Synth


@pytest.mark.parametrize("variant", ["dev", "prod_existing"])
def test_cfn_lint_reports_no_error(variant: str, request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(variant)
    beside_python = Path(sys.executable).parent / "cfn-lint"
    cfn_lint = str(beside_python) if beside_python.is_file() else shutil.which("cfn-lint")
    assert cfn_lint, "cfn-lint is not installed (infra/requirements.txt)"
    result = subprocess.run(
        [
            cfn_lint,
            "--format",
            "parseable",
            "--regions",
            "us-east-1",
            "--",
            str(synth.template_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # cfn-lint's exit code is a bit mask: 2 errors, 4 warnings, 8 informational.
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert result.returncode & ~(4 | 8) == 0, result.stdout + result.stderr
    assert errors == []
