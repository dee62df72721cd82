"""Every ``SPARKGATE_*`` setting the code reads is in the README's settings tables or the docs, so an operator
finds it in one place; the few the platform sets for its own processes are listed here with who sets them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Not operator settings: written by the platform for its own child processes, or not a variable at all.
INTERNAL = {
    "SPARKGATE_KERNEL_ROOTS": "the supervisor, in each kernel's environment (sandbox.kernel_env)",
    "SPARKGATE_CLUSTER_NETNS": "the local standalone cluster, for the kernels it links (local/cluster.py)",
    "SPARKGATE_CONSOLE_WS_URL": "the local stack / the CDK app: the console's WebSocket URL",
    "SPARKGATE_GEO_CSV_CACHE": "a kernel's own cache folder (engine/geo/csv_cache.py; kernels get no host variables)",
    "SPARKGATE_EMR_RUNTIME_ROLE_ARN": "the CDK app (infra/stacks): the per-user runtime role template",
    "SPARKGATE_ERROR": "not a variable: the request models' error kind (models/base.py)",
}
#: a whole name (the run of name characters is taken entirely) and what follows it
_NAME = re.compile(r"SPARKGATE_[A-Z0-9_]*([*{]?)")


def names_in(text: str) -> set[str]:
    """The ``SPARKGATE_*`` names in ``text``; a prefix is not a name: one that ends in ``_`` or is followed
    by ``*`` or ``{`` (``SPARKGATE_KERNEL_*`` in prose, ``f"SPARKGATE_{part}"`` in code)."""
    return {match.group(0) for match in _NAME.finditer(text) if not match.group(1) and not match.group(0).endswith("_")}


def _read_by_code() -> set[str]:
    names: set[str] = set()
    for path in [ROOT / "app.py", *(ROOT / "chalicelib").rglob("*.py")]:
        names.update(names_in(path.read_text()))
    return names


def _documented() -> set[str]:
    docs = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    return {name for doc in docs for name in names_in(doc.read_text())}


def test_names_and_prefixes() -> None:
    code = 'os.environ.get("SPARKGATE_NEW_PORT", "0"); f"SPARKGATE_{kind}_LIMIT"; "SPARKGATE_KERNEL_*", SPARKGATE_X1.'
    assert names_in(code) == {"SPARKGATE_NEW_PORT", "SPARKGATE_X1"}
    # a prefix in a docstring hides no real name that starts with it
    assert names_in("each from a ``SPARKGATE_KERNEL_*`` variable; int_env('SPARKGATE_KERNEL_FILE_MB')") == {
        "SPARKGATE_KERNEL_FILE_MB"
    }


def test_every_setting_the_code_reads_is_documented() -> None:
    missing = sorted(_read_by_code() - _documented() - set(INTERNAL))
    assert not missing, f"document these in README.md's settings tables (or docs/): {missing}"


def test_the_internal_list_names_only_what_the_code_still_reads() -> None:
    assert set(INTERNAL) <= _read_by_code()
