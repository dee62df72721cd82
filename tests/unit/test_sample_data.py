"""The sample data is in the box: the default data root is the repo's own ``data/`` whatever the working
directory, it holds the 9,999-row NYC taxi CSV and the peer renders the tests compare against, and no
test depends on a folder outside the clone or skips when data is missing (issue 14)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from chalicelib import config, user_files
from chalicelib.engine import sandbox

REPO = Path(__file__).resolve().parents[2]
CSV = REPO / "data" / "nyc_taxi" / "0_10000_nyc_taxi_and_building.csv"


def test_default_data_root_is_the_repo_data_folder_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPARKGATE_DATA_ROOTS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert config.settings().data_roots == (str(REPO / "data"),)
    assert user_files.shared_roots() == ((REPO / "data").resolve(),)
    assert sandbox.shared_roots() == (str((REPO / "data").resolve()),)


def test_an_explicit_setting_replaces_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKGATE_DATA_ROOTS", f"{tmp_path}/a::{tmp_path}/b")
    assert config.settings().data_roots == (f"{tmp_path}/a", f"{tmp_path}/b")
    monkeypatch.setenv("SPARKGATE_DATA_ROOTS", "")
    assert config.settings().data_roots == ()  # set but empty: no shared root at all


def test_the_taxi_csv_ships_with_9999_rows_and_16_columns() -> None:
    with CSV.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows[0]) == 16 and rows[0][:2] == ["VendorID", "tpep_pickup_datetime"]
    assert len(rows) - 1 == 9999


def test_the_render_baselines_the_tests_use_ship_too() -> None:
    render_tests = (REPO / "tests" / "engine" / "test_geo_render.py").read_text()
    named = set(re.findall(r'"([a-z_]+(?:_\d+)*\.png)"', render_tests))
    named |= {f"point_map_nyc_{n}.png" for n in range(1, 7)} | {f"heat_map_nyc_{n}.png" for n in range(1, 6)}
    named |= {f"choropleth_map_nyc_{n}.png" for n in (1, 2, 3, 10)}
    missing = sorted(n for n in named if not (REPO / "data" / "arctern_baselines" / n).is_file())
    assert not missing


def test_no_test_names_a_machine_path_or_skips_for_missing_data() -> None:
    offenders = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        if path == Path(__file__).resolve():
            continue
        text = path.read_text()
        for pattern in (r"[\"']/work/", r"shared/data", r"\"\.\./shared", r"skip\w*\([^)]*(data|CSV|csv)"):
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(REPO)}: {pattern}")
    assert not offenders
