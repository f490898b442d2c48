"""The combiner base class: parameters, input checks, JSON state and the temperature hook."""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np

from ensembles.combiners._calibration import apply_temperature, fit_temperature
from ensembles.errors import ConfigError, DataError, NotFittedError, ShapeError
from ensembles.manifest import Task

TASKS: tuple[str, ...] = ("classification", "regression")

#: Row sums of class probabilities may be this far from one (float32 members).
_PROB_SUM_TOL = 1e-3


def param_problem(owner: str, name: str, expected: str, got: Any) -> str:
    """Format one bad-parameter message in the project's single template."""
    return f"The '{name}' parameter of {owner} must be {expected}. Got {got!r} instead."


def is_int_at_least(value: Any, low: int) -> bool:
    """Return whether ``value`` is an int (not a bool) no smaller than ``low``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def split_rows(y: np.ndarray, task: Task, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into two deterministic halves (stratified by class for classification).

    Parameters
    ----------
    y : np.ndarray, shape (n_samples,) or (n_samples, n_outputs)
        Targets of the rows to split.
    task : {"classification", "regression"}
        Classification alternates the rows of each class between the halves, the
        alternation going on from one class to the next, so the halves differ by one row at
        most and every class of two rows or more is in both.
    seed : int
        Seed of the permutation.

    Returns
    -------
    tuple of np.ndarray
        Sorted row indices of the first and of the second half.
    """
    rng = np.random.default_rng(seed)
    n_samples = len(y)
    if task == "classification":
        by_class = [rng.permutation(np.flatnonzero(y == label)) for label in np.unique(y)]
        mask = np.zeros(n_samples, dtype=bool)
        mask[np.concatenate(by_class)[::2]] = True
    else:
        mask = np.zeros(n_samples, dtype=bool)
        mask[rng.permutation(n_samples)[: (n_samples + 1) // 2]] = True
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def to_json_value(value: Any) -> Any:
    """Convert numpy scalars and arrays to plain Python values for JSON."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [to_json_value(item) for item in value]
    return value


class Combiner:
    """Base of every combiner: reduces ``(n_members, n_samples, n_outputs)`` member outputs.

    Subclasses set ``kind`` and ``_param_names``, store their parameters in ``__init__``
    and implement ``_fit_rule``, ``_combine_rule``, ``_rule_state`` and ``_load_rule_state``.
    The base class owns input checks, the fitted counts, temperature scaling and the JSON
    state.

    With ``calibrate=True`` one temperature is learned on the combined outputs of the fit
    rows. Rules that learn from the targets (blending, stacking) would be overconfident on
    their own fit rows, so for them those outputs are cross-fitted: the rule is fitted on
    one seeded half (stratified by class) and applied to the other, both ways, before it
    is fitted on all rows.
    """

    kind: ClassVar[str]
    _param_names: ClassVar[tuple[str, ...]]
    #: True when the rule learns from targets: calibration then uses cross-fitted outputs.
    _learns_from_targets: ClassVar[bool] = False

    task: Task
    calibrate: bool

    # -- parameters --------------------------------------------------------------------

    def _param_problems(self) -> list[str]:
        """Return one message per invalid parameter (subclasses extend the list)."""
        name = type(self).__name__
        problems = []
        if self.task not in TASKS:
            expected = "one of 'classification', 'regression'"
            problems.append(param_problem(name, "task", expected, self.task))
        if not isinstance(self.calibrate, bool):
            problems.append(param_problem(name, "calibrate", "a bool", self.calibrate))
        elif self.calibrate and self.task == "regression":
            problems.append(
                f"{name} cannot calibrate a regression combiner: temperature scaling needs "
                "class probabilities. Use calibrate=False for task='regression'."
            )
        return problems

    def _validate_params(self) -> None:
        problems = self._param_problems()
        if problems:
            raise ConfigError("\n".join(problems))

    def get_params(self) -> dict[str, Any]:
        """Return the constructor parameters as JSON-safe values."""
        return {name: to_json_value(getattr(self, name)) for name in self._param_names}

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- fit and combine ---------------------------------------------------------------

    def fit(self, member_preds: np.ndarray, y: np.ndarray, X: np.ndarray | None = None) -> Self:
        """Learn the combination from held-out member outputs.

        Parameters
        ----------
        member_preds : np.ndarray, shape (n_members, n_samples, n_outputs)
            Member outputs on rows the members were not trained on: class probabilities
            for classification, predicted values for regression.
        y : np.ndarray, shape (n_samples,) or (n_samples, n_outputs)
            Class indices ``0 .. n_classes - 1`` for classification; values for regression.
        X : np.ndarray, shape (n_samples, n_features), optional
            Raw features; only stacking with ``passthrough=True`` uses them.

        Returns
        -------
        Self
            The fitted combiner.
        """
        from threadpoolctl import threadpool_limits  # installed with scipy and scikit-learn

        # Combiner problems are small: one BLAS thread is fastest, and many threads
        # contending on a busy machine slowed the stacking fit 30-fold in measurements.
        with threadpool_limits(limits=1):
            return self._fit(member_preds, y, X)

    def _fit(self, member_preds: np.ndarray, y: np.ndarray, X: np.ndarray | None) -> Self:
        member_preds = self._check_member_preds(member_preds)
        y = self._check_targets(y, member_preds.shape)
        temperature = None
        if self.calibrate and self._learns_from_targets:
            combined = np.empty(member_preds.shape[1:])
            first, second = split_rows(y, self.task, self._split_seed())
            for fit_rows, out_rows in ((first, second), (second, first)):
                self._fit_rule(member_preds[:, fit_rows], y[fit_rows], _rows(X, fit_rows))
                combined[out_rows] = self._combine_rule(
                    member_preds[:, out_rows], _rows(X, out_rows)
                )
            self._fit_rule(member_preds, y, X)
            temperature = fit_temperature(combined, y)
        else:
            self._fit_rule(member_preds, y, X)
            if self.calibrate:
                temperature = fit_temperature(self._combine_rule(member_preds, X), y)
        self.n_members_, _, self.n_outputs_ = member_preds.shape
        self.temperature_ = temperature
        return self

    def combine(
        self, member_preds: np.ndarray, X: np.ndarray | None = None, *, check: bool = True
    ) -> np.ndarray:
        """Reduce member outputs to one output per sample.

        Parameters
        ----------
        member_preds : np.ndarray, shape (n_members, n_samples, n_outputs)
            Member outputs, with as many members and outputs as seen in ``fit``.
        X : np.ndarray, shape (n_samples, n_features), optional
            Raw features; only stacking with ``passthrough=True`` uses them.
        check : bool, default True
            Validate the values (finite; probabilities for classification). A caller whose
            arrays are already float64 outputs of verified members (serving) passes False
            to skip that pass; the member and output counts are always checked.

        Returns
        -------
        np.ndarray, shape (n_samples, n_outputs)
            Class probabilities for classification, values for regression.
        """
        self._check_fitted()
        if check:
            member_preds = self._check_member_preds(member_preds)
        elif np.ndim(member_preds) != 3:
            raise ShapeError(
                f"{type(self).__name__} needs member_preds of shape "
                f"(n_members, n_samples, n_outputs); got shape {np.shape(member_preds)}."
            )
        name = type(self).__name__
        n_members, _, n_outputs = member_preds.shape
        if n_members != self.n_members_:
            raise ShapeError(
                f"{name} was fitted on {self.n_members_} members but got {n_members}. "
                "Pass the outputs of the members it was fitted on, in the same order."
            )
        if n_outputs != self.n_outputs_:
            raise ShapeError(
                f"{name} was fitted on {self.n_outputs_} outputs per member but got {n_outputs}."
            )
        combined = self._combine_rule(member_preds, X)
        if self.temperature_ is not None:
            combined = apply_temperature(combined, self.temperature_)
        return combined

    @property
    def member_weights(self) -> np.ndarray | None:
        """np.ndarray, shape (n_members,), or None: each member's share of the combined output.

        Counts effective members (``1 / sum(w ** 2)``) for the default choice; None means
        equal shares. Uncertainty never uses it: disagreement is over the whole pool.
        """
        return None

    def _split_seed(self) -> int:
        """Seed of the row split used for held-out decisions (overridden where a param)."""
        return 0

    def _fit_rule(self, member_preds: np.ndarray, y: np.ndarray, X: np.ndarray | None) -> None:
        raise NotImplementedError

    def _combine_rule(self, member_preds: np.ndarray, X: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    # -- state -------------------------------------------------------------------------

    def _rule_state(self) -> dict[str, Any]:
        """Fitted state specific to the rule, JSON-safe."""
        return {}

    def _load_rule_state(self, fitted: dict[str, Any]) -> None:
        """Restore what ``_rule_state`` wrote."""

    def is_fitted(self) -> bool:
        """Return whether ``fit`` (or ``from_state`` with a fitted state) has run."""
        return hasattr(self, "n_members_")

    def to_state(self) -> dict[str, Any]:
        """Return the combiner as a JSON-safe dict.

        Returns
        -------
        dict
            ``{"kind": str, "params": {...}, "fitted": {...} or None}``; ``fitted`` holds
            ``n_members``, ``n_outputs``, ``temperature`` and the rule's own state.
        """
        fitted = None
        if self.is_fitted():
            fitted = {
                "n_members": int(self.n_members_),
                "n_outputs": int(self.n_outputs_),
                "temperature": self.temperature_,
                **self._rule_state(),
            }
        return {"kind": self.kind, "params": self.get_params(), "fitted": fitted}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild a combiner from :meth:`to_state` output (numpy only).

        Parameters
        ----------
        state : dict
            As written by :meth:`to_state`, possibly after a JSON round trip.

        Returns
        -------
        Self
            A combiner whose ``combine`` reproduces the saved one exactly.
        """
        name = cls.__name__
        missing = [key for key in ("kind", "params", "fitted") if key not in state]
        if missing:
            raise ConfigError(
                f"The state of {name} is missing the keys {missing}; expected the dict "
                "written by to_state()."
            )
        if state["kind"] != cls.kind:
            raise ConfigError(
                f"{name}.from_state needs a state of kind '{cls.kind}'; got '{state['kind']}'. "
                "Use combiner_from_state to dispatch on the kind."
            )
        unknown = sorted(set(state["params"]) - set(cls._param_names))
        if unknown:
            raise ConfigError(
                f"The state of {name} has unknown parameters {unknown}; "
                f"expected some of {list(cls._param_names)}."
            )
        combiner = cls(**state["params"])
        fitted = state["fitted"]
        if fitted is not None:
            try:
                combiner.n_members_ = int(fitted["n_members"])
                combiner.n_outputs_ = int(fitted["n_outputs"])
                temperature = fitted["temperature"]
                combiner.temperature_ = None if temperature is None else float(temperature)
                combiner._load_rule_state(fitted)
            except KeyError as exc:
                raise ConfigError(
                    f"The fitted state of {name} is missing the key {exc.args[0]!r}; "
                    "save it again with to_state()."
                ) from exc
            except (TypeError, ValueError) as exc:  # e.g. a weight that is not a number
                raise ConfigError(
                    f"The fitted state of {name} is malformed ({exc}); save it again with "
                    "to_state()."
                ) from exc
        return combiner

    # -- checks ------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            name = type(self).__name__
            raise NotFittedError(
                f"This {name} is not fitted yet. Call fit(member_preds, y) with held-out "
                "member outputs before combine, or rebuild it from a fitted state."
            )

    def _check_member_preds(self, member_preds: np.ndarray) -> np.ndarray:
        name = type(self).__name__
        member_preds = np.asarray(member_preds, dtype=float)
        if member_preds.ndim != 3 or 0 in member_preds.shape:
            raise ShapeError(
                f"{name} needs member_preds of shape (n_members, n_samples, n_outputs) with "
                f"no empty axis; got shape {member_preds.shape}."
            )
        if not np.isfinite(member_preds).all():
            raise DataError(f"{name} got member_preds with NaN or infinite values.")
        if self.task == "classification":
            sums = member_preds.sum(axis=2)
            if member_preds.min() < 0 or np.abs(sums - 1).max() > _PROB_SUM_TOL:
                raise DataError(
                    f"{name} is a classification combiner and needs class probabilities "
                    "(non-negative, rows summing to one) in member_preds; got values in "
                    f"[{member_preds.min():.3g}, {member_preds.max():.3g}] with row sums up "
                    f"to {np.abs(sums - 1).max():.3g} away from one."
                )
        return member_preds

    def _check_targets(self, y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        name = type(self).__name__
        _, n_samples, n_outputs = shape
        y = np.asarray(y)
        if len(y) != n_samples:
            raise ShapeError(
                f"{name} got {len(y)} targets for {n_samples} samples in member_preds."
            )
        if self.task == "classification":
            if y.ndim != 1:
                raise ShapeError(
                    f"{name} needs class indices y of shape (n_samples,); got shape {y.shape}."
                )
            if not np.issubdtype(y.dtype, np.integer):
                if not (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y))):
                    raise DataError(f"{name} needs integer class indices in y; got {y.dtype}.")
                y = y.astype(np.int64)
            if y.min() < 0 or y.max() >= n_outputs:
                raise DataError(
                    f"{name} needs class indices in 0..{n_outputs - 1} (member_preds has "
                    f"{n_outputs} classes); got values in {y.min()}..{y.max()}."
                )
            return y
        y = y.astype(float)
        if y.ndim == 1 and n_outputs == 1:
            y = y[:, None]
        if y.shape != (n_samples, n_outputs):
            raise ShapeError(
                f"{name} needs y of shape ({n_samples}, {n_outputs}) (or ({n_samples},) for "
                f"one output); got shape {y.shape}."
            )
        return y


def _rows(X: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if X is None else np.asarray(X)[rows]
