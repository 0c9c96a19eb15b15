"""The FT strategy names, without torch: the search spec validates against them cheaply.

:mod:`tlsearch.transfer.strategies` registers what each name does.
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
