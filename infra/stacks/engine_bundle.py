"""The engine bundle: what the stack uploads to ``s3://<bucket>/engine/``.

The engine runs inside the Spark driver as ``chalicelib.engine`` with the bundle zip on
``--py-files``. The zip is built reproducibly (sorted entries, fixed timestamps and modes), so
an unchanged ``chalicelib/`` gives an unchanged asset hash and no redeploy of the bundle.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

#: Files of the bundle, as named under the ``engine/`` prefix of the bucket.
ENGINE_ZIP = "sparkgate-engine.zip"
#: The spark-submit entry script, next to the zip (the EmrRunner derives its URI from the zip's).
ENGINE_MAIN = "engine_main.py"
BOOTSTRAP_SCRIPT = "bootstrap.sh"
#: The supervisor credential broker the bootstrap installs on the primary node.
CREDENTIAL_BROKER = "credential_broker.py"

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)
_SKIPPED_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def _package_files(package_dir: Path) -> list[Path]:
    """Every file of the package that belongs in the bundle, in a stable order."""
    files = []
    for path in package_dir.rglob("*"):
        relative = path.relative_to(package_dir)
        if any(part in _SKIPPED_DIRS for part in relative.parts):
            continue
        if path.is_file() and path.suffix not in _SKIPPED_SUFFIXES:
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(package_dir).as_posix())


def build_engine_zip(source_dir: Path, target: Path) -> Path:
    """Zip ``source_dir/chalicelib`` into ``target`` with ``chalicelib/`` at the zip's root.

    The result is byte-for-byte the same for the same sources.
    """
    package_dir = source_dir / "chalicelib"
    if not (package_dir / "__init__.py").is_file():
        raise FileNotFoundError(f"{package_dir} is not a Python package")
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for path in _package_files(package_dir):
            name = "chalicelib/" + path.relative_to(package_dir).as_posix()
            info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, path.read_bytes())
    return target


def entry_script(source_dir: Path) -> Path:
    """The engine's own EMR entry script if it has one, else the equivalent one in ``infra/assets``."""
    own = source_dir / "chalicelib" / "engine" / "emr_entry.py"
    return own if own.is_file() else ASSETS_DIR / "engine_main.py"


def stage_engine_assets(source_dir: Path, staging_dir: Path) -> Path:
    """Lay out the ``engine/`` prefix (zip, entry point, EMR bootstrap, credential broker) in ``staging_dir``."""
    staging_dir.mkdir(parents=True, exist_ok=True)
    build_engine_zip(source_dir, staging_dir / ENGINE_ZIP)
    shutil.copyfile(entry_script(source_dir), staging_dir / ENGINE_MAIN)
    shutil.copyfile(ASSETS_DIR / "bootstrap.sh", staging_dir / BOOTSTRAP_SCRIPT)
    shutil.copyfile(ASSETS_DIR / CREDENTIAL_BROKER, staging_dir / CREDENTIAL_BROKER)
    return staging_dir
