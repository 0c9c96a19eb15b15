r"""The multi-property loss of the paper's MPT model (Sec. 2.6, Eq. 1).

For a structure with predictions :math:`y_p^i`, targets :math:`y_t^i` and availability
:math:`\delta^i \in \{0, 1\}` of property :math:`i = 1..N`, the paper writes

.. math:: \mathcal{L} = \frac{1}{N} \sum_{i=1}^{N} |y_p^i - y_t^i| \, \delta^i .

:func:`masked_l1` averages over the structure's *known* properties (``denominator="known"``,
the default: :math:`N` replaced by :math:`\sum_i \delta^i`), so a structure with one known
property weighs as much as one with seven; ``denominator="all"`` divides by the number of
properties :math:`N` as Eq. 1 is printed (close to the paper's scripts, which apply ``L1Loss``
to ``pred * delta``, a mean over all B x N entries). Either way the per-structure losses are
averaged over the structures of the batch that have at least one known property.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor


def masked_l1(
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    denominator: Literal["known", "all"] = "known",
) -> Tensor:
    """Mean over structures of the mean absolute error over their known properties.

    Args:
        pred: (B, P) predictions.
        target: (B, P) targets; entries where ``mask`` is False are ignored and may be NaN.
        mask: (B, P) bool, True where the target is known.
        denominator: ``known`` (mean over known properties) or ``all`` (sum / P, Eq. 1).

    Returns:
        A scalar. Structures without a known property are skipped; when no structure of the
        batch has one, the result is a zero that still has a ``grad_fn`` (so ``backward()``
        works and gives zero gradients). Unknown entries give exactly zero gradient.

    Raises:
        ValueError: shapes differ or are not 2-D, ``mask`` is not bool, bad ``denominator``.
    """
    if pred.dim() != 2 or pred.shape != target.shape or pred.shape != mask.shape:
        raise ValueError(
            "pred, target and mask must share one (B, P) shape; got "
            f"{tuple(pred.shape)}, {tuple(target.shape)}, {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
    if denominator not in ("known", "all"):
        raise ValueError(f"denominator must be 'known' or 'all', got {denominator!r}")
    safe_target = torch.where(mask, target, torch.zeros_like(target))
    err = torch.where(mask, (pred - safe_target).abs(), torch.zeros_like(pred))
    known = mask.sum(dim=1)
    has_known = known > 0
    if not bool(has_known.any()):
        return err.sum()  # exactly 0, with a grad_fn
    if denominator == "known":
        per_structure = err.sum(dim=1) / known.clamp(min=1).to(err.dtype)
    else:
        per_structure = err.sum(dim=1) / pred.shape[1]
    return per_structure[has_known].mean()
