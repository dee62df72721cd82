"""Job log lines as Linkis writes them: ``yyyy-MM-dd HH:mm:ss.SSS LEVEL text`` (UTC), and the closing
line Linkis's entrance writes when a Job ends, which linkis-cli waits for (``Your job completed with``)."""

from __future__ import annotations

import time

#: what linkis-cli looks for in a log to know the Job's log is complete
FINISH_INDICATOR = "Your job completed with"


def linkis_line(level: str, text: str, when: float | None = None) -> str:
    """``text`` with Linkis's prefix: the time (UTC, milliseconds) and the level."""
    now = time.time() if when is None else when
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now))
    return f"{stamp}.{int(now * 1000) % 1000:03d} {level} {text}"


def closing_line(status: str) -> str:
    """The last line of a Job's log, in Linkis's words (``Succeed`` -> Linkis's ``Success``)."""
    if status == "Succeed":
        return f"Congratulations. {FINISH_INDICATOR} status Success."
    return f"Sorry. {FINISH_INDICATOR} a status {status}. You can view logs for the reason."
