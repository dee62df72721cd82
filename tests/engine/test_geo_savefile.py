"""Arctern's ``/savefile`` on the engine: ``run_geo_op(savefile)`` writes a query's result or a table as
csv, json or parquet inside the caller's area (the handler's checks are in
tests/functional/test_arctern_peer.py); a path whose real location left the area is refused here too."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pyspark.sql import SparkSession


def test_savefile_writes_query_results_and_tables(geo_spark: SparkSession, tmp_path: Path) -> None:
    from chalicelib.engine.geo.ops import run_geo_op

    area = os.path.realpath(tmp_path / "area")
    os.makedirs(area)
    geo_spark.sql("select id, id * 2 as twice from range(5)").createOrReplaceTempView("save_src")
    outputs = [
        {
            "sql": "select * from save_src where id < 3",
            "format": "csv",
            "path": f"{area}/out/q.csv",
            "options": {"header": "true"},
            "mode": "error",
        },
        {"table": "save_src", "format": "parquet", "path": f"{area}/t.parquet", "mode": "error", "options": {}},
        {"table": "save_src", "format": "json", "path": f"{area}/t.json", "mode": "error", "options": {}},
    ]
    answer = run_geo_op(geo_spark, {}, {"op": "savefile", "tables": outputs, "area": area})
    assert answer == {"paths": [o["path"] for o in outputs]}
    back = geo_spark.read.option("header", "true").csv(f"{area}/out/q.csv").orderBy("id").collect()
    assert [(r["id"], r["twice"]) for r in back] == [("0", "0"), ("1", "2"), ("2", "4")]
    assert geo_spark.read.parquet(f"{area}/t.parquet").count() == 5
    assert sorted(r["twice"] for r in geo_spark.read.json(f"{area}/t.json").collect()) == [0, 2, 4, 6, 8]
    with pytest.raises(Exception, match="already exists"):  # mode error: an existing output is kept
        run_geo_op(geo_spark, {}, {"op": "savefile", "tables": outputs[1:2], "area": area})
    again = {**outputs[1], "mode": "overwrite", "sql": "select 1 as id"}
    run_geo_op(geo_spark, {}, {"op": "savefile", "tables": [again], "area": area})
    assert geo_spark.read.parquet(f"{area}/t.parquet").count() == 1


def test_savefile_refuses_a_path_whose_real_location_left_the_area(geo_spark: SparkSession, tmp_path: Path) -> None:
    from chalicelib.engine.geo.ops import run_geo_op

    area = os.path.realpath(tmp_path / "area")
    outside = tmp_path / "outside"
    os.makedirs(area)
    outside.mkdir()
    os.symlink(outside, f"{area}/link")  # swapped in after the handler checked the path
    for path in (f"{area}/link/x.csv", str(outside / "y.csv"), area):
        op = {"op": "savefile", "area": area, "tables": [{"sql": "select 1", "format": "csv", "path": path}]}
        with pytest.raises(ValueError, match="inside your own area"):
            run_geo_op(geo_spark, {}, op)
    assert list(outside.iterdir()) == []
