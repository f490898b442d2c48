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
    """Learn the temperature that minimizes the log loss of held-out probabilities.

    A bounded scalar search over ``log T`` (scipy, imported here only).

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
    from scipy.optimize import minimize_scalar

    log_probs = np.log(np.clip(probs, PROB_FLOOR, None))
    rows = np.arange(len(y))

    def loss(log_temperature: float) -> float:
        logits = log_probs / np.exp(log_temperature)
        logits -= logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1))
        return float(np.mean(log_norm - logits[rows, y]))

    bound = float(np.log(TEMPERATURE_RANGE))
    result = minimize_scalar(
        loss, bounds=(-bound, bound), method="bounded", options={"xatol": 1e-8}
    )
    return float(np.exp(result.x))
