"""What this machine lets a process use: its CPU cores."""

from __future__ import annotations

import math
import os
from pathlib import Path

#: Where the cgroup hierarchies are mounted; ``/proc/self/cgroup`` names the process's
#: group in each.
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def usable_cores(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota.

    A container started with ``--cpus 2`` on a 64-core host sees 64 cores in its affinity
    mask but is throttled to two; this returns 2 there (a quota of 1.5 cores counts as 2).
    The quota is the smallest on the way from the process's own group up to the root, in
    cgroup v2 (``cpu.max``) or v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``).

    Parameters
    ----------
    cgroup_root : Path
        Where the cgroup hierarchies are mounted (default :data:`CGROUP_ROOT`).
    proc_cgroup : Path
        The file naming the process's group in each hierarchy (default
        :data:`PROC_CGROUP`).

    Returns
    -------
    int
        At least 1.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def cgroup_cpu_quota(
    cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP
) -> float | None:
    """The tightest cgroup CPU quota over this process's groups, in cores (None without).

    Parameters
    ----------
    cgroup_root : Path
        Where the cgroup hierarchies are mounted (default :data:`CGROUP_ROOT`).
    proc_cgroup : Path
        The file naming the process's group in each hierarchy (default
        :data:`PROC_CGROUP`).

    Returns
    -------
    float or None
        The quota in cores; None when no group on the way up sets one.
    """
    groups = _cpu_groups(cgroup_root, proc_cgroup)
    quotas = [q for folder in groups for q in [_quota_in(folder)] if q is not None]
    return min(quotas) if quotas else None


def _cpu_groups(cgroup_root: Path, proc_cgroup: Path) -> list[Path]:
    """The folders of this process's CPU cgroups and of every group above them."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    folders = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one unified hierarchy
            base = cgroup_root
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's hierarchy
            base = cgroup_root / controllers
        else:
            continue
        group = base / path.lstrip("/")
        while True:
            folders.append(group)
            if group == base:
                break
            group = group.parent
    return folders


def _quota_in(folder: Path) -> float | None:
    """The CPU quota set in one cgroup folder, in cores (None when unlimited or unreadable)."""
    try:
        if (folder / "cpu.max").exists():
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 else quota / period
