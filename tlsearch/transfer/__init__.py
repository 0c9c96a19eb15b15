"""Transfer learning: FT strategies, FT sampling, the MPT corpus, frozen-trunk features, runs,
and the closed-form (kernel) ridge heads on frozen features (:mod:`.closed_form`).

The transfer-learning model classes (new head layers, the multi-property model) live with the
model, in :mod:`tlsearch.model`; the MPT loss with the other losses in
:mod:`tlsearch.training.losses`.

Importing the package is cheap (no torch, no pymatgen): the names below load their module on
first use, so the search driver can validate strategy names (:mod:`.names`) without torch.
"""

from __future__ import annotations

from tlsearch.lazy import lazy_getattr

_EXPORTS = {
    "MaterialIndex": "mpt_corpus",
    "MPTCorpus": "mpt_corpus",
    "build_corpus": "mpt_corpus",
    "exclude_target": "mpt_corpus",
    "SAMPLING_METHODS": "names",
    "SamplingMethod": "names",
    "sample_indices": "sampling",
    "STRATEGY_NAMES": "names",
    "StrategyName": "names",
    "STRATEGIES": "strategies",
    "apply_frozen_eval": "strategies",
    "get_strategy": "strategies",
    "install_frozen_eval": "strategies",
    "layer_number": "strategies",
    "prepare_finetune": "strategies",
    "trainable_named_parameters": "strategies",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
