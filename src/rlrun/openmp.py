"""OpenMP's wait policy for a learner that shares its cores with sampler workers (no torch import here).

torch's CPU kernels run on an OpenMP team; between two parallel regions its idle threads spin (libgomp:
for up to ~300,000 iterations) before they sleep. That costs nothing when the team has the cores to
itself, but a learner with `hardware.torch_threads > 1` updating while sampler workers collect the next
rollout (`algo.overlap=true`) shares the cores with them: a spinning thread holds a core a worker wants,
and a worker preempting a team thread leaves the others spinning at the next barrier. With
OMP_WAIT_POLICY=PASSIVE idle threads sleep at once. Measured on 2 idle cores (PPO on Pong from pixels,
workers=2 overlap=true torch_threads=2, each side in its own process, 4 alternating rounds): 466 steps/s
passive against 430 spinning, 1.74x and 1.61x the single process with one thread (docs/sampler.md).

libgomp reads the variable once, when torch loads it, so the `rlrun` command decides before it imports
torch. A value the user exported is kept.
"""

from __future__ import annotations

import os
import sys

VARIABLE = "OMP_WAIT_POLICY"

# What this process's OpenMP runtime was given, for the start banner (None: not this module's business).
note: str | None = None
# Whether this module set the variable (an earlier job of a multirun in this process), not the user.
set_here = False


def wants_passive_wait(torch_threads: int, overlap: bool) -> bool:
    """Whether a run's learner threads share their cores with sampler workers collecting beside the update."""
    return torch_threads > 1 and overlap


def choose_wait_policy(torch_threads: int, overlap: bool) -> None:
    """Before torch is imported: OMP_WAIT_POLICY=PASSIVE for a multi-threaded learner that overlaps sampler
    workers, unless the user set the variable. Leaves a note for the banner either way it matters."""
    global note, set_here
    note = None
    if not wants_passive_wait(torch_threads, overlap):
        return
    if set_here and os.environ.get(VARIABLE) == "PASSIVE":
        note = f"idle OpenMP threads sleep: {VARIABLE}=PASSIVE"
    elif VARIABLE in os.environ:
        note = f"{VARIABLE}={os.environ[VARIABLE]}, from the environment"
    elif "torch" in sys.modules:
        # A multirun whose jobs share a process: OpenMP was set up when torch was first loaded.
        note = (f"{VARIABLE} not set: torch was loaded before this job, so idle OpenMP threads spin; "
                f"export {VARIABLE}=PASSIVE before the multirun to have them sleep")
    else:
        os.environ[VARIABLE] = "PASSIVE"
        set_here = True
        note = f"idle OpenMP threads sleep: {VARIABLE}=PASSIVE"
