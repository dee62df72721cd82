"""Shared Spark fixtures for the engine tests: one local[2] session for the whole run."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession

REPO = Path(__file__).resolve().parents[2]
#: The sample data shipped in the repo (``data/``, the default data root): never skipped for, always there.
NYC_CSV = REPO / "data" / "nyc_taxi" / "0_10000_nyc_taxi_and_building.csv"
BASELINES = REPO / "data" / "arctern_baselines"


@pytest.fixture(scope="session")
def jdk() -> None:
    """Jar fixtures are built with the JDK ``make install`` provides (scripts/ensure-java.sh): without one,
    the tests that need it fail loudly instead of skipping."""
    assert shutil.which("javac") and shutil.which("jar"), "no JDK on PATH: run make install (scripts/ensure-java.sh)"


def planted_secrets(other_user_id: str) -> tuple[Path, Path]:
    """Files a sandboxed run must not read: another user's private file and one in the platform's state dir."""
    from chalicelib.config import settings
    from chalicelib.user_files import user_area

    secret = user_area(other_user_id) / "secret.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(secret.parent, 0o700)
    secret.write_text("not yours")
    state_file = settings().state_dir / "secret-state"
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text("platform state")
    return secret, state_file


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """A session-wide SparkSession: local[2], 4 shuffle partitions, no UI, Arrow on."""
    # Python workers must run this interpreter and import chalicelib from the repo.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    session = (
        SparkSession.builder.master("local[2]")
        .appName("sparkgate-engine-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def geo_spark(spark: SparkSession) -> SparkSession:
    """The session with the ST_ functions registered."""
    from chalicelib.engine.geo import register_st_functions

    register_st_functions(spark)
    return spark


@pytest.fixture(scope="session")
def nyc_taxi(geo_spark: SparkSession) -> DataFrame:
    """The 9,999-row NYC taxi CSV as table ``nyc_taxi`` (header, inferSchema), cached."""
    df = geo_spark.read.option("header", True).option("inferSchema", True).csv(str(NYC_CSV)).cache()
    df.createOrReplaceTempView("nyc_taxi")
    df.count()
    return df
