"""The FT strategy and sampling names, without torch or numpy: the search spec and the command
line's choices validate against them cheaply.

:mod:`tlsearch.transfer.strategies` registers what each strategy name does,
:mod:`tlsearch.transfer.sampling` each sampling method.
"""

from __future__ import annotations

from typing import Literal, get_args

StrategyName = Literal[
    "unfreeze_all",
    "new_head",
    "last_layer",
    "interaction_2b",
    "interaction_3b",
    "new_head_freeze_1",
    "new_head_freeze_6",
    "new_head_unfreeze_all",
    "scratch",
]
STRATEGY_NAMES: tuple[str, ...] = get_args(StrategyName)

#: Closed-form heads on the frozen trunk's features (:mod:`tlsearch.transfer.closed_form`):
#: ``finetune``'s cheapest strategies, kept apart from :data:`STRATEGY_NAMES` (the search
#: spec's strategy names) so that no existing spec's meaning or run ids change.
CLOSED_FORM_HEADS: tuple[str, ...] = ("krr", "ridge")

#: Strategies that train only the head (and new head layers): the trunk runs forward only, so
#: a seed-run costs about half of one that trains every layer (measured on the quickstart:
#: 7 s vs 16 s at FT size 80). The search orders grid trials by it; a test checks it against
#: what :mod:`tlsearch.transfer.strategies` leaves trainable.
HEAD_ONLY_STRATEGIES = frozenset({"last_layer", "new_head", "new_head_freeze_6"})

#: How the FT structures are drawn from a training pool (paper Sec. 2.5).
SamplingMethod = Literal["random", "weighted", "uniform"]
SAMPLING_METHODS: tuple[str, ...] = get_args(SamplingMethod)
