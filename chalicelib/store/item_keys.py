"""The single table's key layout: every ``pk``/``sk`` and index key the Job, session, task and work items use,
and the parsers that read them back.

Pure Python (no boto3): the push logic (``chalicelib.push``) reads stream keys with these parsers.

- job:      ``pk = JOB#<exec_id>``, ``sk = JOB``; queued: ``gsi1 = (SESSIONQ#<session_id>, <task_id:012d>)``;
            always ``gsi2 = (USERJOBS#<owner>, <task_id:012d>)``
- log:      ``pk = JOB#<exec_id>``, ``sk = LOG#<first_line:09d>``
- task id:  ``pk = TASKID#<task_id>``, ``sk = TASKID``
- counter:  ``pk = COUNTER#<name>``, ``sk = COUNTER``
- session:  ``pk = SESSION#<session_id>``, ``sk = SESSION``; while live ``gsi1pk = LIVESESSIONS``
- task:     ``pk = TASK#<task_id>``, ``sk = TASK``; ``gsi1pk = WORKTASKS#<work_id>``; active: ``gsi2pk = ACTIVETASKS``
- slot:     ``pk = SLOT#<work_id>#<slot>``, ``sk = SLOT``
- work:     ``pk = WORK#<work_id>``, ``sk = WORK``; ``gsi1pk = USERWORKS#<user_id>``;
            scheduled: ``gsi2 = (SCHEDULED#<run_frequency>, <work_id>)``
- claim:    ``pk = WORKNAME#<user_id>#<name>``, ``sk = WORKNAME``
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

JOB_PREFIX = "JOB#"
JOB_SK = "JOB"
LOG_PREFIX = "LOG#"
SESSION_PREFIX = "SESSION#"
SESSION_SK = "SESSION"
SESSION_QUEUE_PREFIX = "SESSIONQ#"
#: the live-sessions index partition (``gsi1pk``) of every session whose driver is starting or running
LIVE_SESSIONS_PK = "LIVESESSIONS"
#: the active-tasks index partition (``gsi2pk``) of every task holding its work's ``active_task_id``
ACTIVE_TASKS_PK = "ACTIVETASKS"
TASK_PREFIX = "TASK#"


def order_sk(task_id: int) -> str:
    """A Job's sort key in its queue and owner indexes: the numeric task id, zero-padded."""
    return f"{task_id:012d}"


def job_key(exec_id: str) -> dict[str, str]:
    """The primary key of a Job item."""
    return {"pk": f"{JOB_PREFIX}{exec_id}", "sk": JOB_SK}


def log_key(exec_id: str, first_line: int) -> dict[str, str]:
    """The primary key of the log chunk of ``exec_id`` starting at line ``first_line``."""
    return {"pk": f"{JOB_PREFIX}{exec_id}", "sk": f"{LOG_PREFIX}{first_line:09d}"}


def task_id_key(task_id: int) -> dict[str, str]:
    """The primary key of the pointer from numeric task id ``task_id`` to its Job's exec id."""
    return {"pk": f"TASKID#{task_id}", "sk": "TASKID"}


def counter_key(name: str) -> dict[str, str]:
    """The primary key of atomic counter ``name``."""
    return {"pk": f"COUNTER#{name}", "sk": "COUNTER"}


def session_key(session_id: str) -> dict[str, str]:
    """The primary key of a session item."""
    return {"pk": f"{SESSION_PREFIX}{session_id}", "sk": SESSION_SK}


def session_queue_pk(session_id: str) -> str:
    """The ``gsi1pk`` of the Jobs waiting in ``session_id``'s queue."""
    return f"{SESSION_QUEUE_PREFIX}{session_id}"


def user_jobs_pk(owner: str) -> str:
    """The ``gsi2pk`` of an owner's Jobs."""
    return f"USERJOBS#{owner}"


def task_key(task_id: str) -> dict[str, str]:
    """The primary key of a task item (a run of a work)."""
    return {"pk": f"{TASK_PREFIX}{task_id}", "sk": "TASK"}


def work_tasks_pk(work_id: str) -> str:
    """The ``gsi1pk`` of a work's tasks."""
    return f"WORKTASKS#{work_id}"


def slot_key(work_id: str, slot: str) -> dict[str, str]:
    """The primary key of the claim on scheduled run ``slot`` of ``work_id``."""
    return {"pk": f"SLOT#{work_id}#{slot}", "sk": "SLOT"}


def work_key(work_id: str) -> dict[str, str]:
    """The primary key of a work item."""
    return {"pk": f"WORK#{work_id}", "sk": "WORK"}


def work_name_key(user_id: str, name: str) -> dict[str, str]:
    """The primary key of the claim that keeps a user's work name unique."""
    return {"pk": f"WORKNAME#{user_id}#{name}", "sk": "WORKNAME"}


def user_works_pk(user_id: str) -> str:
    """The ``gsi1pk`` of a user's works."""
    return f"USERWORKS#{user_id}"


def scheduled_pk(run_frequency: str) -> str:
    """The ``gsi2pk`` of the live works run at ``run_frequency``."""
    return f"SCHEDULED#{run_frequency}"


# ---- parsers ------------------------------------------------------------------------------------


def _after(value: Any, prefix: str) -> str | None:
    text = str(value or "")
    return text[len(prefix) :] if text.startswith(prefix) else None


def exec_id_of(keys: Mapping[str, Any]) -> str | None:
    """The exec id of a Job or log chunk item from its keys, or None for any other item."""
    return _after(keys.get("pk"), JOB_PREFIX)


def is_job(keys: Mapping[str, Any]) -> bool:
    """True for the keys of a Job item itself."""
    return exec_id_of(keys) is not None and keys.get("sk") == JOB_SK


def is_log(keys: Mapping[str, Any]) -> bool:
    """True for the keys of a log chunk item."""
    return exec_id_of(keys) is not None and _after(keys.get("sk"), LOG_PREFIX) is not None


def is_session(keys: Mapping[str, Any]) -> bool:
    """True for a session (driver) item."""
    return _after(keys.get("pk"), SESSION_PREFIX) is not None and keys.get("sk") == SESSION_SK


def queued_session(item: Mapping[str, Any] | None) -> str | None:
    """The session whose queue a raw Job item (its ``gsi1pk``) waits in, or None."""
    return _after((item or {}).get("gsi1pk"), SESSION_QUEUE_PREFIX)
