"""Print an OpenBLAS kernel this CPU supports other than the one numpy runs now.

``scripts/test.sh`` runs the suite a second time with ``OPENBLAS_CORETYPE`` set to it. The
candidates go from the newest instruction set down; the first one the CPU has (by its
``/proc/cpuinfo`` flags) and numpy is not already using wins, once a fresh interpreter
shows OpenBLAS really runs it. Exit status 1 (and nothing printed) when no such kernel
exists.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy  # noqa: F401  (loads OpenBLAS so threadpoolctl can see it)
from threadpoolctl import threadpool_info

#: kernel -> the CPU flag it needs, newest first; Prescott runs on any x86-64.
KERNELS = {"SkylakeX": "avx512f", "Haswell": "avx2", "Sandybridge": "avx", "Prescott": "sse3"}


def current_kernel() -> str | None:
    """The ``architecture`` numpy's OpenBLAS reports, or None without OpenBLAS."""
    for library in threadpool_info():
        if library.get("internal_api") == "openblas":
            return library.get("architecture")
    return None


def cpu_flags() -> set[str]:
    """The flags of the first processor in ``/proc/cpuinfo`` (empty when unreadable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def other_kernel() -> str | None:
    """The newest supported kernel that is not the current one; None when there is none
    (no OpenBLAS, or a CPU without these x86 flags)."""
    current, flags = current_kernel(), cpu_flags()
    if current is None:
        return None
    for kernel, flag in KERNELS.items():
        if flag in flags and kernel.lower() != current.lower():
            return kernel
    return None


def runs_with(kernel: str) -> bool:
    """Whether numpy, started with ``OPENBLAS_CORETYPE=kernel``, really runs that kernel."""
    probe = "from scripts.other_blas_kernel import current_kernel; print(current_kernel())"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "OPENBLAS_CORETYPE": kernel},
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    return result.stdout.strip().lower() == kernel.lower()


if __name__ == "__main__":
    kernel = other_kernel()
    if kernel is None or not runs_with(kernel):
        print("no other OpenBLAS kernel can run here", file=sys.stderr)
        sys.exit(1)
    print(kernel)
