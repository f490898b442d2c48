"""Whether a local path could be created, asked before the work that would write it.

A run that trains for minutes and then cannot write its result loses everything, so the
commands ask first: the store before publishing, the benchmark and the diagnosis before
writing their reports.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ensembles.errors import ConfigError


def check_can_create(target: Path) -> None:
    """Fail now where creating the folder ``target`` (or using it, if it exists) surely could not.

    The nearest existing path on the way to ``target`` must be a folder on a writable file
    system that ``os.access`` lets us write in. Best effort: what only the write itself can
    tell (root on sysfs, NFS root-squash, SELinux) still fails at the write.

    Parameters
    ----------
    target : Path
        A folder that will be created (with its parents) or written in.

    Raises
    ------
    OSError
        ``NotADirectoryError`` naming ``target`` when a file is in the way; ``EROFS`` or
        ``PermissionError`` naming the first folder that would have to be created (or
        ``target`` itself when it exists): the path the write's ``mkdir`` would name.
    """
    ancestry = [target, *target.parents]
    at = next(i for i, path in enumerate(ancestry) if os.path.lexists(path))
    existing, first_missing = ancestry[at], ancestry[max(at - 1, 0)]
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(target))
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(first_missing))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(first_missing))


def report_write_error(folder: Path, error: OSError) -> ConfigError:
    """The one line for a report that cannot be written to ``folder``, and what to do."""
    reason = error.strerror or str(error)
    return ConfigError(f"cannot write the report to {folder}: {reason}; choose another --output")


def check_report_folder(folder: Path) -> None:
    """Refuse, before the work whose report it would hold, a folder that could not be written.

    Raises
    ------
    ConfigError
        :func:`report_write_error`'s line, the one writing the report would give.
    """
    try:
        check_can_create(folder)
    except OSError as error:
        raise report_write_error(folder, error) from error
