"""The processes rlrun runs side by side: the cores they may share, and stopping the workers it started.

`usable_cores` is what both counts start from: one sampler worker per core (rlrun.hardware's
workers=auto) and the jobs a sweep runs at once (rlrun.sweep's parallel_jobs). This module imports
neither torch nor anything heavy: `import rlrun` loads it through rlrun.sweep.

`stop_processes` ends the sampler's and A3C's workers, whatever brought the caller there. The caller
first asks its workers to stop (a pipe message, an event); `stop_processes` waits for them, terminates
the ones that outlive the wait and kills the ones that outlive that: a stuck worker (an env that hangs,
a rollout in flight) never keeps the run from ending or leaves a process behind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from multiprocessing.process import BaseProcess


def usable_cores() -> int:
    """Cores this process may run on: the affinity mask (what SLURM, taskset or a container grant),
    not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
