r"""The multi-property loss of the paper's MPT model (Sec. 2.6, Eq. 1).

For a structure with predictions :math:`y_p^i`, targets :math:`y_t^i` and availability
:math:`\delta^i \in \{0, 1\}` of property :math:`i = 1..N`, the paper writes

.. math:: \mathcal{L} = \frac{1}{N} \sum_{i=1}^{N} |y_p^i - y_t^i| \, \delta^i .

:func:`masked_l1` offers two denominators (``TrainConfig.mpt_loss_denominator``):

* ``n_properties`` (the default, the paper's): divide the structure's summed error by the
  number of properties :math:`N`, as Eq. 1 is printed. The paper's own code does the same:
  its multi-property ALIGNN multiplies its outputs by the availability vector and trains with
  ``torch.nn.L1Loss()`` against targets that are 0 where unknown, i.e. the mean over all
  B x N entries = the batch mean of Eq. 1 (``MULTI-PROPERTY/TRAINING-FILES/multi-train/
  drop-properties.py`` and ``alignn_multi.py`` in sai-mat-group/
  transfer-learning-material-properties). A structure then weighs in proportion to how many
  properties it carries.
* ``known``: divide by the structure's known-property count :math:`\sum_i \delta^i`, so a
  structure with one known property weighs as much as one with seven.

Either way the per-structure losses are averaged over the structures of the batch that have at
least one known property (the paper's scripts also count structures with none, which add 0;
the MPT corpus drops such structures, see :func:`tlsearch.transfer.mpt_corpus.exclude_target`).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

#: The denominators of :func:`masked_l1`; ``TrainConfig.mpt_loss_denominator`` spells the same
#: ``Literal`` (not imported here, so that the config module does not import torch).
MPTLossDenominator = Literal["n_properties", "known"]
DENOMINATORS: tuple[str, ...] = get_args(MPTLossDenominator)


def masked_l1(
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    denominator: MPTLossDenominator = "n_properties",
) -> Tensor:
    """Mean over structures of their summed absolute error over known properties / denominator.

    Args:
        pred: (B, P) predictions.
        target: (B, P) targets; entries where ``mask`` is False are ignored and may be NaN.
        mask: (B, P) bool, True where the target is known.
        denominator: ``n_properties`` (sum / P, Eq. 1 and the paper's code) or ``known`` (mean
            over the structure's known properties).

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
    if denominator not in DENOMINATORS:
        raise ValueError(
            f"denominator must be one of {', '.join(DENOMINATORS)}, got {denominator!r}"
        )
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
