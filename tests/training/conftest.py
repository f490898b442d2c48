"""Training fixtures: the test session's local Ray cluster, started once at first use."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

#: CPUs of the test session's Ray cluster: the CI machine's two cores, whatever this one has.
RAY_CPUS = 2


@pytest.fixture(scope="session")
def ray_module() -> Iterator[ModuleType]:
    """``ray`` (the test skips without it); a cluster still running at the end is shut down."""
    ray = pytest.importorskip("ray")
    yield ray
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def ray_cluster(ray_module: ModuleType) -> ModuleType:
    """``ray``, initialised on the session's local cluster (2 CPUs, no dashboard).

    One cluster serves the whole session (starting one costs seconds); it is started by the
    first test that asks for it, or again after a :func:`no_ray` test shut it down.
    """
    if not ray_module.is_initialized():
        ray_module.init(num_cpus=RAY_CPUS, include_dashboard=False)
    return ray_module


@pytest.fixture
def no_ray(ray_module: ModuleType) -> ModuleType:
    """``ray``, with no cluster initialised in this process (for the engine's own cluster)."""
    if ray_module.is_initialized():
        ray_module.shutdown()
    return ray_module
