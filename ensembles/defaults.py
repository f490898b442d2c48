"""The defaults a user gets with no flags, in one place (the CLIs import no torch for them).

- ``STRATEGY``: ``repeat``, independent runs on every training row (deep ensembles,
  Lakshminarayanan et al. 2017): in ``docs/benchmark.md`` they beat the one-run strategies
  on out-of-distribution detection and keep every row for every member.
- ``MEMBERS``: 5 members (runs, folds, checkpoints, cycles), the size of Deep Ensembles
  and of the UCI protocol; most of an ensemble's gain comes from its first few members.
- ``VALIDATION_FRACTION``, ``MIN_VALIDATION_ROWS``, ``MAX_VALIDATION_FRACTION``: 10% of
  the rows stop training and fit the combiners, raised to 200 rows but at most 20%
  (:func:`ensembles.data.validation_share`; the figures behind it are in
  ``docs/training.md``, "Using the rows").
- ``TEST_FRACTION``: 20% of the rows are never trained or fitted on.
- ``INTERVAL_LEVEL``: regression intervals hold 90% of the predictive distribution; a
  version records its level (``training.interval_level``) and serving uses that one.
- ``REFIT_MAX_ROWS``: independent members trained by the budget rule on at most this many
  training + validation rows (and peaking after its minimum steps) are trained again on
  both, for the epochs the validation rows found (:mod:`ensembles.training.refit`;
  Concrete RMSE 4.75 -> 4.52 in ``docs/training.md``,
  "Using the rows"); above it the validation rows are a tenth of the data and a second
  training run costs more than they add.
- ``REGULARIZATION_MAX_ROWS``: runs on at most this many training + validation rows also
  train their members with stronger regularization and keep the ensemble with the lower
  validation loss (:mod:`ensembles.training.regularization`); above it a second ensemble
  costs more than the regularization is likely to add.
"""

from __future__ import annotations

from typing import Final

STRATEGY: Final = "repeat"
MEMBERS: Final = 5
VALIDATION_FRACTION: Final = 0.1
MIN_VALIDATION_ROWS: Final = 200
MAX_VALIDATION_FRACTION: Final = 0.2
TEST_FRACTION: Final = 0.2
INTERVAL_LEVEL: Final = 0.9
REFIT_MAX_ROWS: Final = 10_000
REGULARIZATION_MAX_ROWS: Final = 10_000
