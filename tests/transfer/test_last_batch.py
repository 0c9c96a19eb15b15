"""Issue 13: FT with new MLP layers and MPT heads (BatchNorm over graphs) train whenever
n_train mod batch = 1 (a lone last structure joins the batch before)."""

from __future__ import annotations

import pytest

from tlsearch.structures.generate import generate_dataset, write_jarvis_json
from tlsearch.training.config import RunConfig, TrainConfig
from tlsearch.transfer.run import finetune_run, mpt_pretrain_run, pretrain_run

RECIPE = {"epochs": 1, "device": "cpu", "early_stopping_patience": None, "num_threads": 1}


def _run(root, data: str, out: str, tiny_config) -> RunConfig:
    return RunConfig(
        data=data, out_dir=root / out, cache_dir=root / "cache", model=tiny_config,
        train=TrainConfig(**RECIPE),
    )  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("lone")


@pytest.fixture(scope="module")
def pretrained(root):
    from tests.transfer.conftest import TINY

    pretrain_run(_run(root, "generated:12:1", "pt", TINY), progress=False)
    return root / "pt"


@pytest.mark.parametrize("strategy", ["new_head", "new_head_freeze_6"])
def test_new_head_fine_tuning_trains_on_19_structures(root, pretrained, tiny_config, strategy):
    # 19 -> 17 train + 2 validation; 17 mod 16 = 1 (the generated:19:2)
    run = _run(root, "generated:19:2", f"ft_{strategy}", tiny_config)
    metrics = finetune_run(run, pretrained, strategy, progress=False)
    assert (metrics["n_train"], metrics["batch_size"]) == (17, 16)
    assert metrics["epochs_run"] == 1 and not metrics["diverged"]


def test_mpt_pretraining_and_its_fine_tuning_train_at_n_train_mod_batch_1(root, tiny_config):
    a = write_jarvis_json(generate_dataset(18, seed=5).records, root / "a.json")
    b = write_jarvis_json(generate_dataset(20, seed=6).records, root / "b.json")
    mpt = mpt_pretrain_run(
        _run(root, str(a), "mpt", tiny_config), {"A": str(a), "B": str(b)}, progress=False
    )
    assert mpt["n_train"] % 16 == 1 and mpt["batch_size"] == 16  # 37 distinct -> 33 train
    assert not mpt["diverged"]
    ft = finetune_run(_run(root, "generated:19:2", "ft_mpt", tiny_config), root / "mpt",
                      progress=False)  # fmt: skip
    assert ft["provenance"]["strategy"] == "mpt_finetune"
    assert (ft["n_train"], ft["epochs_run"]) == (17, 1) and not ft["diverged"]
