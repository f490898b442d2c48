"""ensembles.machine.usable_cores: the affinity mask, capped by a cgroup CPU quota."""

from __future__ import annotations

import os

import pytest

from ensembles import machine


@pytest.fixture
def affinity() -> int:
    return len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cpu_max", "cap"),
    [("max 100000\n", None), ("100000 100000\n", 1), ("150000 100000\n", 2), ("garbage", None)],
)
def test_a_cgroup_quota_caps_the_affinity_mask(tmp_path, monkeypatch, affinity, cpu_max, cap):
    limit = tmp_path / "cpu.max"
    limit.write_text(cpu_max)
    monkeypatch.setattr(machine, "CGROUP_CPU_MAX", limit)
    expected = affinity if cap is None else min(affinity, cap)
    assert machine.usable_cores() == expected


def test_without_a_cgroup_file_the_affinity_mask_counts(tmp_path, monkeypatch, affinity):
    monkeypatch.setattr(machine, "CGROUP_CPU_MAX", tmp_path / "absent")
    assert machine.usable_cores() == affinity
