"""What a checked `train.loss` is made of: its terms, their weights, and the targets it scores."""

from __future__ import annotations

from typing import Any

from dtec.lang.schema import LOSS_TARGETS


def loss_terms(loss: Any) -> list[tuple[int | None, dict[str, Any]]]:
    """Return the loss's terms as (index in `sum(terms)`, or None for a loss alone; the term).

    Terms reported as invalid are left out; a loss that is not a valid call has none.
    """
    if not isinstance(loss, dict):
        return []
    if loss.get("fn") != "sum":
        return [(None, loss)]
    terms = loss.get("terms")
    return [(i, term) for i, term in enumerate(terms) if isinstance(term, dict)] if isinstance(terms, list) else []


def loss_weights(loss: dict[str, Any]) -> list[float]:
    """One weight per term: those of `sum(weights)`, 1 each where it gives none, 1 for a loss alone."""
    if loss.get("fn") != "sum":
        return [1.0]
    return [float(w) for w in loss.get("weights") or [1.0] * len(loss["terms"])]


def scored_targets(loss: Any) -> tuple[str | None, str | None]:
    """Return what the loss scores (`classes`, `binary`, `values`; None when no term says) and
    the first term that says it (its function name)."""
    for _, term in loss_terms(loss):
        scored = LOSS_TARGETS.get(term.get("fn"))
        if scored is not None:
            return scored, term["fn"]
    return None, None

