"""Transfer learning: FT strategies, new heads, FT sampling, the MPT corpus, model and loss.

Nothing here imports pymatgen at import time (only :mod:`tlsearch.transfer.mpt_corpus` uses it,
inside its functions).
"""

from tlsearch.transfer.heads import HeadedALIGNN
from tlsearch.transfer.losses import masked_l1
from tlsearch.transfer.mpt_corpus import MaterialIndex, MPTCorpus, build_corpus, exclude_target
from tlsearch.transfer.mpt_model import MultiPropertyALIGNN, to_finetune
from tlsearch.transfer.sampling import SAMPLING_METHODS, SamplingMethod, sample_indices
from tlsearch.transfer.strategies import (
    PAPER_LAYERS,
    STRATEGIES,
    STRATEGY_NAMES,
    StrategyName,
    apply_frozen_eval,
    get_strategy,
    install_frozen_eval,
    paper_layer,
    prepare_finetune,
    trainable_named_parameters,
)

__all__ = [
    "PAPER_LAYERS",
    "SAMPLING_METHODS",
    "STRATEGIES",
    "STRATEGY_NAMES",
    "HeadedALIGNN",
    "MPTCorpus",
    "MaterialIndex",
    "MultiPropertyALIGNN",
    "SamplingMethod",
    "StrategyName",
    "apply_frozen_eval",
    "build_corpus",
    "exclude_target",
    "get_strategy",
    "install_frozen_eval",
    "masked_l1",
    "paper_layer",
    "prepare_finetune",
    "sample_indices",
    "to_finetune",
    "trainable_named_parameters",
]
