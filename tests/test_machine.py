"""ensembles.machine.usable_cores: the affinity mask, capped by the tightest cgroup quota."""

from __future__ import annotations

import os

import pytest

from ensembles import machine


@pytest.fixture
def affinity() -> int:
    return len(os.sched_getaffinity(0))


@pytest.fixture
def cgroups(tmp_path):
    """A fake cgroup mount and ``/proc/self/cgroup`` under ``tmp_path``: write the files,
    get the cores :func:`machine.usable_cores` reads from them."""
    root, proc = tmp_path / "cgroup", tmp_path / "proc_self_cgroup"

    def cores(membership: str, files: dict[str, str]) -> int:
        proc.write_text(membership)
        for relative, text in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return machine.usable_cores(cgroup_root=root, proc_cgroup=proc)

    return cores


def test_the_tightest_v2_quota_from_the_group_up_counts(cgroups):
    cores = cgroups(
        "0::/app/web\n",
        {
            "cpu.max": "max 100000\n",
            "app/cpu.max": "50000 100000\n",  # half a core, the tightest: one worker
            "app/web/cpu.max": "300000 100000\n",
        },
    )
    assert cores == 1


def test_a_fraction_of_a_core_rounds_up(cgroups, affinity):
    assert cgroups("0::/\n", {"cpu.max": "150000 100000\n"}) == min(affinity, 2)


def test_a_v1_quota_counts_and_an_unlimited_one_does_not(cgroups, affinity):
    cores = cgroups(
        "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n",
        {
            "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "100000\n",
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cores == 1


@pytest.mark.parametrize(
    ("membership", "files"),
    [
        ("0::/\n", {"cpu.max": "max 100000\n"}),
        ("0::/\n", {"cpu.max": "garbage"}),
        ("0::/\n", {}),
    ],
)
def test_without_a_quota_the_affinity_mask_counts(cgroups, affinity, membership, files):
    assert cgroups(membership, files) == affinity


def test_without_cgroups_the_affinity_mask_counts(tmp_path, affinity):
    absent = tmp_path / "absent"
    assert machine.usable_cores(cgroup_root=tmp_path, proc_cgroup=absent) == affinity
