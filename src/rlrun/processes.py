"""Stopping the worker processes this process started (the sampler's, A3C's), whatever brought it here.

The caller first asks its workers to stop (a pipe message, an event); then `stop_processes` waits for
them, terminates the ones that outlive the wait and kills the ones that outlive that: a stuck worker
(an env that hangs, a rollout in flight) never keeps the run from ending or leaves a process behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from multiprocessing.process import BaseProcess

JOIN_SECONDS = 5.0  # a worker asked to stop gets this long to exit before it is terminated


def stop_processes(processes: Iterable[BaseProcess], join_seconds: float = JOIN_SECONDS) -> None:
    """Join every started process within one shared `join_seconds` deadline (they exit in parallel);
    SIGTERM each one still alive and give it `join_seconds` more; SIGKILL one that outlives that too."""
    processes = [process for process in processes if process.pid is not None]  # never started: nothing to stop
    deadline = time.monotonic() + join_seconds
    for process in processes:
        process.join(max(deadline - time.monotonic(), 0))
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(join_seconds)
        if process.is_alive():
            process.kill()
            process.join()
