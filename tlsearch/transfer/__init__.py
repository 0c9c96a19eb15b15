"""Transfer learning: FT strategies, new heads, FT sampling, the MPT corpus, model and loss.

Importing the package is cheap (no torch, no pymatgen): the names below load their module on
first use, so the search driver can validate strategy names (:mod:`.names`) without torch.
"""

from __future__ import annotations

from tlsearch.lazy import lazy_getattr

_EXPORTS = {
    "HeadedALIGNN": "heads",
    "masked_l1": "losses",
    "MaterialIndex": "mpt_corpus",
    "MPTCorpus": "mpt_corpus",
    "build_corpus": "mpt_corpus",
    "exclude_target": "mpt_corpus",
    "MultiPropertyALIGNN": "mpt_model",
    "to_finetune": "mpt_model",
    "SAMPLING_METHODS": "names",
    "SamplingMethod": "names",
    "sample_indices": "sampling",
    "STRATEGY_NAMES": "names",
    "StrategyName": "names",
    "PAPER_LAYERS": "strategies",
    "STRATEGIES": "strategies",
    "apply_frozen_eval": "strategies",
    "get_strategy": "strategies",
    "install_frozen_eval": "strategies",
    "paper_layer": "strategies",
    "prepare_finetune": "strategies",
    "trainable_named_parameters": "strategies",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
