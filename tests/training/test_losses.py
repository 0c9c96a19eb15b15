"""masked_l1: the paper's Eq. 1 (either denominator), NaN-safe, no gradient to unknowns."""

from __future__ import annotations

import math

import pytest
import torch

from tlsearch.training.losses import masked_l1

NAN = float("nan")


def test_value_matches_hand_computation() -> None:
    pred = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    target = torch.tensor([[2.0, NAN, 1.0], [NAN, NAN, NAN], [4.0, 7.0, NAN]])
    mask = torch.isfinite(target)
    # known count: structure 0: (|1-2| + |3-1|) / 2 = 1.5; 1: skipped; 2: (1 + 2) / 2 = 1.5
    assert masked_l1(pred, target, mask, denominator="known").item() == pytest.approx(1.5)
    # Eq. 1 as printed (the default), 1/N with N = 3 properties: (3/3 + 3/3) / 2
    assert masked_l1(pred, target, mask, denominator="n_properties").item() == pytest.approx(1.0)
    assert masked_l1(pred, target, mask).item() == pytest.approx(1.0)


def test_denominators_differ_when_known_counts_differ() -> None:
    pred = torch.zeros(2, 4)
    target = torch.tensor([[4.0, NAN, NAN, NAN], [1.0, 1.0, 1.0, 1.0]])
    mask = torch.isfinite(target)
    # known: (4/1 + 4/4) / 2 = 2.5; n_properties: (4/4 + 4/4) / 2 = 1.0
    assert masked_l1(pred, target, mask, "known").item() == pytest.approx(2.5)
    assert masked_l1(pred, target, mask, "n_properties").item() == pytest.approx(1.0)


def test_paper_code_equivalence() -> None:
    """n_properties = the paper's code: L1Loss over (pred * delta, target with 0 where unknown)."""
    torch.manual_seed(0)
    pred = torch.randn(5, 3)
    target = torch.randn(5, 3)
    delta = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 1], [1, 0, 0], [0, 1, 0]]).bool()
    paper = torch.nn.L1Loss()(pred * delta, torch.where(delta, target, torch.zeros_like(target)))
    assert masked_l1(pred, torch.where(delta, target, NAN), delta).item() == pytest.approx(
        paper.item()
    )


def test_config_literal_matches_the_loss() -> None:
    from typing import get_args

    from tlsearch.training.config import TrainConfig
    from tlsearch.training.losses import DENOMINATORS

    field = TrainConfig.model_fields["mpt_loss_denominator"]
    assert get_args(field.annotation) == DENOMINATORS
    assert TrainConfig().mpt_loss_denominator == "n_properties"


def test_nan_targets_give_finite_loss_and_gradients() -> None:
    pred = torch.randn(4, 3, requires_grad=True)
    target = torch.full((4, 3), NAN)
    target[:, 0] = 1.0
    mask = torch.isfinite(target)
    loss = masked_l1(pred, target, mask)
    loss.backward()
    assert math.isfinite(loss.item())
    assert torch.isfinite(pred.grad).all()
    assert torch.all(pred.grad[:, 1:] == 0)


def test_no_known_value_gives_zero_with_grad_fn() -> None:
    pred = torch.randn(2, 2, requires_grad=True)
    target = torch.full((2, 2), NAN)
    loss = masked_l1(pred, target, torch.zeros(2, 2, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.all(pred.grad == 0)


def test_bad_inputs_are_named() -> None:
    pred = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="one \\(B, P\\) shape"):
        masked_l1(pred, torch.zeros(2, 2), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        masked_l1(pred, pred, torch.ones(2, 3))
    with pytest.raises(ValueError, match="denominator"):
        masked_l1(pred, pred, torch.ones(2, 3, dtype=torch.bool), denominator="some")  # type: ignore[arg-type]
