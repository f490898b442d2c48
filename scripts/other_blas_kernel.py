"""Print an OpenBLAS kernel this CPU supports other than the one numpy runs now.

``scripts/test.sh`` runs the suite a second time with ``OPENBLAS_CORETYPE`` set to it. The
candidates go from the newest instruction set down; the first one the CPU has (by its
``/proc/cpuinfo`` flags) and numpy is not already using wins.
"""

from __future__ import annotations

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


def other_kernel() -> str:
    """The newest supported kernel that is not the current one."""
    current, flags = current_kernel(), cpu_flags()
    for kernel, flag in KERNELS.items():
        if flag in flags and kernel.lower() != (current or "").lower():
            return kernel
    return "Prescott"


if __name__ == "__main__":
    print(other_kernel())
