"""A failed SQL Job's log: the clean message first, the engine's (JVM) stack after it, and no ~8 KB JSON
line from pyspark's query-context logger before either (issue 14). The Job's ``error`` is the message."""

from __future__ import annotations

from tests.engine.test_driver import finished, log_of, moto_env, session_id, submit, thread_runner

__all__ = ["moto_env", "session_id", "thread_runner"]  # the fixtures this module uses


def test_a_failed_sql_job_logs_its_message_first_then_the_engine_stack(session_id: str) -> None:
    done = finished(submit("select * from no_such_table_here", "sql", session_id)["exec_id"])
    assert done["status"] == "Failed"
    error = str(done["error"])
    assert error.startswith("AnalysisException: [TABLE_OR_VIEW_NOT_FOUND]"), error
    assert "org.apache.spark" not in error and "\tat " not in error  # the error is the message alone
    log = "\n".join(text for _, text in log_of(done["exec_id"]))  # a multi-line text is several lines
    at = log.index(error)
    assert '"logger"' not in log[:at] and "org.apache.spark" not in log[:at] and "Py4JJavaError" not in log[:at]
    stack = log[at + len(error) :]
    assert stack.startswith("\nengine stack:\n") and "org.apache.spark.sql" in stack
    assert len(stack) <= 21 * 1024


def test_an_error_without_an_engine_stack_logs_the_message_alone(session_id: str) -> None:
    done = finished(submit("select assert_true(false)", "sql", session_id)["exec_id"])
    assert done["status"] == "Failed" and "USER_RAISED_EXCEPTION" in str(done["error"])
    log = "\n".join(text for _, text in log_of(done["exec_id"]))
    assert '"logger"' not in log and str(done["error"]) in log
