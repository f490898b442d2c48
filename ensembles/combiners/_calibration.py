"""Temperature scaling: a temperature T learned on held-out rows, applied as softmax(log p / T)."""

from __future__ import annotations

import numpy as np

#: Probabilities are clipped at this floor before taking logs, as log loss does.
PROB_FLOOR = 1e-15

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
    """Learn the temperature that minimizes the log loss of held-out probabilities, never
    more confident than the rows can vouch for.

    A bounded scalar search over ``log T`` (scipy, imported here only). On rows the
    probabilities classify without a mistake that loss falls for ever as ``T`` falls, so
    the search ends at its floor (0.01) and serves probabilities within 1e-40 of 1: one
    mistake on new rows then costs about 34 nats (digits, 200 validation rows, none wrong:
    test log loss 0.54 against 0.09 uncalibrated). So the temperature is then raised until
    the mean top-class probability is the accuracy the rows support by Laplace's rule of
    succession, ``(n_correct + 1) / (n + 2)``, the correction Platt (1999) applies to his
    targets for the same reason. A temperature whose mean confidence is at or below that
    stands.

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
    # the ceiling is out of reach only near zero accuracy: the likelihood's T stands
    if excess_confidence(result.x) <= 0 or excess_confidence(bound) > 0:
        return float(np.exp(result.x))
    # the top-class probability falls as T rises, so the ceiling is met once above result.x
    return float(np.exp(brentq(excess_confidence, result.x, bound, xtol=1e-10)))
