"""``ensembles-store`` / ``python scripts/store.py``: verify a model store and tidy it.

``check`` reads every file of every version (checksums, the manifest's own checksum, files
the manifest does not list), runs the reproduction check a server runs at load (every
member graph, combiner and averaged graph on the stored test rows must reproduce the stored
outputs, :func:`ensembles.version_parts.verify_version`), reads every ``latest`` pointer, and
lists what killed publishes left behind (on an object store: version prefixes still holding
a publish's claim; a committed one that no longer verifies is a damaged version). It prints
one line per version and exits 1 when anything is wrong.
"""

from __future__ import annotations

import argparse
import sys

from ensembles.cli.common import DefaultsHelpFormatter, OneLineParser, run_command
from ensembles.errors import ConfigError, StoreError
from ensembles.store import MANIFEST_FILE, ModelStore


def build_parser() -> argparse.ArgumentParser:
    """``check [NAME ...] [--store DIR] [--remove-leftovers]``."""
    parser = OneLineParser(
        prog="ensembles-store",
        description="Verify the versions of a model store and list (or remove) what killed "
        "publishes left behind.",
        formatter_class=DefaultsHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    check = commands.add_parser(
        "check",
        help="verify every version, every latest pointer, and list leftovers",
        formatter_class=DefaultsHelpFormatter,
    )
    check.add_argument("names", nargs="*", metavar="NAME", help="ensembles (default: all)")
    check.add_argument(
        "--store",
        default="model_store",
        help="model store folder, or an fsspec URL such as s3://bucket/prefix",
    )
    check.add_argument(
        "--remove-leftovers",
        action="store_true",
        help="remove staging folders and temporary files of killed publishes (in a folder "
        "the next publish of the ensemble removes them too; on an object store a claim "
        "younger than an hour is left alone, as it may be a publish still running)",
    )
    return parser


def check_store(store: ModelStore, names: list[str], remove_leftovers: bool) -> tuple[str, bool]:
    """Verify ``names`` (every ensemble when empty).

    Returns
    -------
    report : str
        One line per version, pointer and leftover.
    intact : bool
        Whether every version verifies, every pointer names one, and nothing is left over
        (after removal, with ``remove_leftovers``).
    """
    if not store.exists():
        what = "is not a folder" if store.is_local else "holds nothing"
        raise StoreError(f"{store.root} {what}: there is no model store there")
    try:
        from ensembles.version_parts import verify_version  # onnx and onnxruntime
    except ImportError as exc:
        raise ConfigError(
            f"store check runs every version's graphs and needs onnx and onnxruntime ({exc}): "
            "pip install '.[serve]'"
        ) from exc
    lines, intact = [], True
    for name in names or store.folder_names():
        problems = store.check_versions(name, verify=verify_version)
        for version in store.unlisted_versions(name):
            problems[version] = _unlisted_problem(store, name, version)
        for version, problem in sorted(problems.items()):
            lines.append(f"{name}/{version}: {'ok' if problem is None else problem}")
            intact &= problem is None
        if not problems:
            lines.append(f"{name}: no version with a manifest")
            intact = False
        else:
            line, pointer_ok = _check_latest(store, name, problems)
            lines.append(f"{name}/latest: {line}")
            intact &= pointer_ok
        try:
            busy = store.publishing(name)
        except OSError as exc:  # a .lock that is a folder, or unreadable
            lines.append(f"{name}: cannot tell whether a publish is running: {exc}")
            intact = False
            continue
        if busy:
            lines.append(f"{name}: a publish is in progress (its staging folder is no leftover)")
            continue
        removed = store.remove_leftovers(name) if remove_leftovers else []
        for leftover in removed:
            lines.append(f"{name}: removed {leftover.name} (left by a killed publish)")
        for leftover in store.leftovers(name):  # those still there, removal asked or not
            lines.append(f"{name}: leftover {leftover.name} (left by a killed publish)")
            intact = False
    return "\n".join(lines), intact


def _unlisted_problem(store: ModelStore, name: str, version: int) -> str:
    """Why a version folder or prefix that is no publish's leftover is no version either."""
    if store.is_local:
        return (
            f"the folder has no {MANIFEST_FILE}, so it is no version (damaged or edited "
            "by hand); remove it, or publish again"
        )
    try:
        store.read_version(name, version)
    except (StoreError, OSError) as exc:
        return f"{exc} (a committed version that no longer verifies; remove it, or publish again)"
    return "it does not verify as a version; remove it, or publish again"


def _check_latest(
    store: ModelStore, name: str, problems: dict[int, str | None]
) -> tuple[str, bool]:
    """The pointer's line and whether it names an intact version."""
    try:
        latest = store.latest(name)
    except (StoreError, OSError) as exc:
        return str(exc), False
    if latest not in problems:
        return f"names version {latest}, which does not exist", False
    if problems[latest] is not None:
        return f"version {latest}, which is not intact", False
    above = [v for v, problem in problems.items() if v > latest and problem is None]
    if above:
        return (
            f"version {latest}; intact version {max(above)} above it is not served (a "
            "rollback, or a publish stopped before it moved latest: write its number to "
            "latest to serve it)",
            True,
        )
    return f"version {latest}", True


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (1 when the store is not intact)."""
    args = build_parser().parse_args(argv)

    def check() -> int:
        store = ModelStore(args.store)
        report, intact = check_store(store, args.names, args.remove_leftovers)
        print(report or f"{store.root}: no ensembles")
        return 0 if intact else 1

    return run_command(check, writes=[args.store])


if __name__ == "__main__":
    sys.exit(main())
