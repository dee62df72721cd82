"""A kernel's error whose Spark text hides the reason gets the reason first."""

from __future__ import annotations


def test_results_lost_for_memory_are_named_as_out_of_memory() -> None:
    from chalicelib.engine.supervisor import DRIVER_MEMORY_HINT, _explained

    spark = "Py4JJavaError: ... Lost task 0.0 in stage 1.0 (TID 1): TaskResultLost (result lost from block manager)"
    assert _explained(spark) == f"{DRIVER_MEMORY_HINT}\n{spark}" and "out of memory" in _explained(spark)
    other = "AnalysisException: [TABLE_OR_VIEW_NOT_FOUND] x"
    assert _explained(other) == other


def test_a_statement_whose_jvm_went_away_is_named_by_the_jvm_s_last_words() -> None:
    from chalicelib.engine.supervisor import lost_driver_reason

    tail = ["held 512 MiB", "Terminating due to java.lang.OutOfMemoryError: Java heap space"]
    oom = lost_driver_reason("EOFError: ", tail, jvm_running=False)
    assert oom is not None and "out of memory" in oom and "OutOfMemoryError" in oom
    assert lost_driver_reason("EOFError: ", tail, jvm_running=True) == oom  # still exiting: its words suffice
    gone = lost_driver_reason("Py4JNetworkError: Answer from Java side is empty", ["ok"], jvm_running=False)
    assert gone is not None and "driver" in gone and "stopped" in gone
    # the user's own EOFError (the JVM still runs, said nothing) and ordinary errors stay as they are
    assert lost_driver_reason("EOFError: EOF when reading a line", ["ok"], jvm_running=True) is None
    assert lost_driver_reason("AnalysisException: [TABLE_OR_VIEW_NOT_FOUND] x", tail, jvm_running=False) is None
