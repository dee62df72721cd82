"""The local stack's timer: runs the schedule tick every ``SPARKGATE_SCHEDULE_SECONDS`` (default 60)."""

from __future__ import annotations

import os
import sys
import threading


class ScheduleMonitor(threading.Thread):
    """Calls ``chalicelib.schedule.tick`` periodically until :meth:`stop`."""

    def __init__(self, every: float | None = None) -> None:
        super().__init__(name="schedule", daemon=True)
        self.every = every if every is not None else float(os.environ.get("SPARKGATE_SCHEDULE_SECONDS", "60"))
        self._stopping = threading.Event()
        self.ticks = 0

    def run(self) -> None:
        """Tick until stopped; a failing tick is reported and the next one retries."""
        from chalicelib import schedule

        while not self._stopping.wait(self.every):
            try:
                schedule.tick()
            except Exception as err:
                print(f"sparkgate: schedule tick failed: {err}", file=sys.stderr, flush=True)
            self.ticks += 1

    def stop(self) -> None:
        """Stop ticking (returns once the thread ended)."""
        self._stopping.set()
        if self.is_alive():
            self.join(timeout=self.every + 30)
