"""What this machine lets a process use: its CPU cores."""

from __future__ import annotations

import math
import os
from pathlib import Path

#: cgroup v2's CPU limit of the process's group: "QUOTA PERIOD" in microseconds, or
#: "max PERIOD" without a limit.
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota.

    A container started with ``--cpus 2`` on a 64-core host sees 64 cores in its affinity
    mask but is throttled to two; this returns 2 there (a quota of 1.5 cores counts as 2).

    Returns
    -------
    int
        At least 1.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)
