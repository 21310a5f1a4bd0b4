"""Top-k classes of a classifier's score vector (the viewer's predictions and the report's CAM row)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["top_classes"]


def top_classes(scores: Any, k: int = 5) -> dict[str, Any] | None:
    """The ``k`` most probable classes of one score vector ``(K,)`` (any float dtype).

    Returns ``{"softmax": bool, "classes": K, "top": [{"index", "probability", "score"}]}``:
    probabilities are the softmax of the scores unless they already are probabilities
    (non-negative, summing to 1 within 1e-3), stated by ``softmax``. None for fewer than 2 classes.
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if values.size < 2:
        return None
    already = bool(np.all(values >= 0) and abs(values.sum() - 1.0) < 1e-3)
    if already:
        probs = values
    else:
        shifted = np.exp(values - values.max())
        probs = shifted / shifted.sum()
    order = np.argsort(-probs, kind="stable")[:k]
    return {"softmax": not already, "classes": int(values.size),
            "top": [{"index": int(i), "probability": round(float(probs[i]), 6), "score": round(float(values[i]), 6)}
                    for i in order]}
