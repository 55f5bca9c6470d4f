"""One daemon thread that runs merges for whoever asks, so that a writer
hands the slow part (new sorted arrays) off its own path."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class BackgroundMerger:
    """Runs submitted merge jobs one at a time on a lazily started thread."""

    def __init__(self, name: str = "compact-merge") -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, job: Callable[[], object]) -> None:
        self._jobs.put(job)
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:  # a failed merge leaves the overlay in place
                log.exception("merge failed")
