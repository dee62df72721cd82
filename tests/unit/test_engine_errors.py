"""A kernel's error whose Spark text hides the reason gets the reason first."""

from __future__ import annotations


def test_results_lost_for_memory_are_named_as_out_of_memory() -> None:
    from chalicelib.engine.supervisor import DRIVER_MEMORY_HINT, _explained

    spark = "Py4JJavaError: ... Lost task 0.0 in stage 1.0 (TID 1): TaskResultLost (result lost from block manager)"
    assert _explained(spark) == f"{DRIVER_MEMORY_HINT}\n{spark}" and "out of memory" in _explained(spark)
    other = "AnalysisException: [TABLE_OR_VIEW_NOT_FOUND] x"
    assert _explained(other) == other
