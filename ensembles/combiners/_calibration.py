"""Temperature scaling: a temperature T learned on held-out rows, applied as softmax(log p / T)."""

from __future__ import annotations

import numpy as np

from ensembles.metrics import PROB_FLOOR

#: The temperature is searched in ``[1 / TEMPERATURE_RANGE, TEMPERATURE_RANGE]``.
TEMPERATURE_RANGE = 100.0


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Rescale class probabilities with a temperature.

    Parameters
    ----------
    probs : np.ndarray, shape (n_samples, n_classes)
        Class probabilities (rows sum to one).
    temperature : float
        ``T > 0``; ``T > 1`` softens, ``T < 1`` sharpens, ``T = 1`` keeps ``probs``.

    Returns
    -------
    np.ndarray, shape (n_samples, n_classes)
        ``softmax(log(probs) / T)`` with ``probs`` clipped at :data:`PROB_FLOOR`.
    """
    logits = np.log(np.clip(probs, PROB_FLOOR, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    scaled /= scaled.sum(axis=1, keepdims=True)
    return scaled


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """Learn the log-loss temperature of held-out probabilities, capped at what they support.

    A bounded scalar search over ``log T`` (scipy, imported here only). On rows classified
    without a mistake that loss falls for ever as ``T`` falls, so the search would end at
    its floor (``1 / TEMPERATURE_RANGE``) and serve probabilities within 1e-40 of 1; one
    mistake on new rows then costs about 34 nats (digits, 200 validation rows, none wrong:
    test log loss 0.54 against 0.09 uncalibrated). With one or two mistakes the optimum is
    finite but still sharp (T 0.2-0.4 on digits, test log loss up to 0.10 against 0.07).
    So whenever the mean top-class probability at the log-loss ``T`` exceeds the accuracy
    Laplace's rule of succession gives the rows, ``(n_correct + 1) / (n + 2)`` (the
    correction Platt (1999) applies to his targets for the same reason), ``T`` is raised
    until they are equal. On calibrated rows the ceiling also binds when their accuracy
    falls below their confidence by chance, softening by a few per cent (a calibrated
    10-class model, logits of scale 3, 200 rows: in 97 of 200 draws, by a median of 4% of
    ``T`` and at most 25%). Where even the softest ``T`` stays above the ceiling (an
    accuracy near or below chance), the softest ``T`` is returned.

    Parameters
    ----------
    probs : np.ndarray, shape (n_samples, n_classes)
        Combined class probabilities on rows the combination rule did not learn from.
    y : np.ndarray, shape (n_samples,)
        Class indices.

    Returns
    -------
    float
        The temperature, within ``[1 / TEMPERATURE_RANGE, TEMPERATURE_RANGE]``.
    """
    from scipy.optimize import brentq, minimize_scalar

    log_probs = np.log(np.clip(probs, PROB_FLOOR, None))
    rows = np.arange(len(y))
    ceiling = (np.sum(probs.argmax(axis=1) == y) + 1) / (len(y) + 2)

    def loss(log_temperature: float) -> float:
        logits = log_probs / np.exp(log_temperature)
        logits -= logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1))
        return float(np.mean(log_norm - logits[rows, y]))

    def excess_confidence(log_temperature: float) -> float:
        """Mean top-class probability at ``T`` minus the rule-of-succession accuracy."""
        return float(apply_temperature(probs, np.exp(log_temperature)).max(axis=1).mean() - ceiling)

    bound = float(np.log(TEMPERATURE_RANGE))
    result = minimize_scalar(
        loss, bounds=(-bound, bound), method="bounded", options={"xatol": 1e-8}
    )
    if excess_confidence(result.x) <= 0:
        return float(np.exp(result.x))
    if excess_confidence(bound) >= 0:  # near or below chance: as unsure as the range allows
        return TEMPERATURE_RANGE
    # the top-class probability falls as T rises, so the ceiling is met once above result.x
    return float(np.exp(brentq(excess_confidence, result.x, bound, xtol=1e-10)))
