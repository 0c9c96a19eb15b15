"""Fine-tuning a foundation model (CHGNet 0.3.0) through the one training path: each strategy
runs 2 epochs on generated structures; the frozen trunk is cached; model.pt predicts (an
ensemble too) and names its backbone and checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tlsearch.model.foundation import UnknownFoundationError
from tlsearch.prediction import Predictor
from tlsearch.training.config import RunConfig, TrainConfig, load_run_config
from tlsearch.transfer.run import finetune_run

pytest.importorskip("chgnet")


def _run(tmp_path, name: str, **train) -> RunConfig:
    recipe = {"epochs": 2, "batch_size": 8, "scheduler": "none", "seed": 0, "device": "cpu",
              "num_threads": 1, **train}  # fmt: skip
    return RunConfig(
        data="generated:20:3", test="generated:6:4", out_dir=tmp_path / name,
        cache_dir=tmp_path / "cache", train=TrainConfig(**recipe),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("strategy", "frozen"),
    [("last_layer", True), ("new_head", True), ("unfreeze_all", False),
     ("new_head_freeze_1", False)],
)  # fmt: skip
def test_each_strategy_fine_tunes_chgnet(tmp_path, strategy, frozen):
    metrics = finetune_run(
        _run(tmp_path, strategy), None, strategy, foundation="chgnet-0.3.0", progress=False
    )
    assert metrics["epochs_run"] == 2 and np.isfinite(metrics["test"]["mae"])
    prov = metrics["provenance"]
    assert prov["backbone"] == "chgnet" and prov["checkpoint"] == "chgnet-0.3.0"
    assert len(prov["checkpoint_sha256"]) == 64 and prov["strategy"] == strategy
    assert metrics["frozen_trunk"]["used"] is frozen, metrics["frozen_trunk"]
    written = json.loads((tmp_path / strategy / "metrics.json").read_text())
    assert written["provenance"]["checkpoint_sha256"] == prov["checkpoint_sha256"]
    config = (tmp_path / strategy / "config.yaml").read_text()
    assert config.startswith("# start: chgnet-0.3.0 (backbone chgnet")
    assert prov["checkpoint_sha256"] in config.splitlines()[0]
    assert load_run_config(tmp_path / strategy / "config.yaml").data == "generated:20:3"


@pytest.mark.parametrize("strategy", ["last_layer", "unfreeze_all"])
def test_sevenn_fine_tunes_and_predicts(tmp_path, strategy):
    pytest.importorskip("sevenn")
    metrics = finetune_run(
        _run(tmp_path, strategy), None, strategy, foundation="sevenn-7net-0", progress=False
    )
    assert metrics["provenance"]["backbone"] == "sevenn" and np.isfinite(metrics["test"]["mae"])
    assert metrics["frozen_trunk"]["used"] is (strategy == "last_layer")
    frame = Predictor.load(tmp_path / strategy / "model.pt", device="cpu").predict("generated:6:4")
    test = np.loadtxt(tmp_path / strategy / "predictions_test.csv", delimiter=",", skiprows=1,
                      usecols=2)  # fmt: skip
    np.testing.assert_allclose(frame["mean"].to_numpy(), test, rtol=1e-5, atol=1e-5)


def test_model_pt_predicts_alone_and_as_an_ensemble(tmp_path):
    for seed in (0, 1):
        finetune_run(
            _run(tmp_path, f"s{seed}", seed=seed), None, "last_layer",
            foundation="chgnet-0.3.0", progress=False,
        )  # fmt: skip
    single = Predictor.load(tmp_path / "s0" / "model.pt", device="cpu")
    frame = single.predict("generated:6:4")
    test = np.loadtxt(tmp_path / "s0" / "predictions_test.csv", delimiter=",", skiprows=1,
                      usecols=2)  # fmt: skip
    np.testing.assert_allclose(frame["mean"].to_numpy(), test, rtol=1e-5, atol=1e-6)
    pair = Predictor.load([tmp_path / "s0" / "model.pt", tmp_path / "s1" / "model.pt"], "cpu")
    both = pair.predict("generated:6:4")
    assert len(both) == 6 and (both["std"] > 0).all()


def test_a_bad_foundation_name_fails_before_any_work(tmp_path):
    with pytest.raises(UnknownFoundationError, match="chgnet-0.3.0"):
        finetune_run(_run(tmp_path, "bad"), None, "last_layer", foundation="chgnet-0.0.1")
    assert not (tmp_path / "bad").exists()


def test_the_commands(tmp_path, capsys):
    """finetune --foundation, predict --model on its model.pt, rank-sources with a foundation
    model beside an ALIGNN PT model; a bad name is exit 2 with one line listing the known."""
    from tlsearch.cli.main import main as tlsearch_cli

    common = ["--epochs", "2", "--device", "cpu", "--cache-dir", str(tmp_path / "c"),
              "--no-progress"]  # fmt: skip
    out = tmp_path / "ft"
    args = ["finetune", "--foundation", "chgnet-0.3.0", "--data", "generated:16:5", "--test",
            "generated:4:6", "--strategy", "last_layer", "--out", str(out), *common]  # fmt: skip
    assert tlsearch_cli(args) == 0
    assert json.loads((out / "metrics.json").read_text())["provenance"]["backbone"] == "chgnet"
    csv_out = tmp_path / "pred.csv"
    assert tlsearch_cli(["predict", "--model", str(out / "model.pt"), "--data",
                         "generated:4:6", "--out", str(csv_out)]) == 0  # fmt: skip
    assert len(csv_out.read_text().splitlines()) == 5
    pt = tmp_path / "pt"
    assert tlsearch_cli(["train", "--data", "generated:16:7", "--out", str(pt), *common,
                         "--hidden", "16"]) == 0  # fmt: skip
    with pytest.raises(ValueError, match="backbone"):  # an ensemble is of one family
        Predictor.load([out / "model.pt", pt / "model.pt"], device="cpu")
    capsys.readouterr()
    rank = ["rank-sources", "--data", "generated:20:8", "--pretrained", str(pt),
            "--foundation", "chgnet-0.3.0", "--cache-dir", str(tmp_path / "c")]  # fmt: skip
    assert tlsearch_cli(rank) == 0
    printed = capsys.readouterr().out
    assert "chgnet-0.3.0: probe_mae" in printed and f"{pt}: probe_mae" in printed
    bad = [*args[:2], "chgnet-9", *args[3:]]
    bad[bad.index("--out") + 1] = str(tmp_path / "bad")
    assert tlsearch_cli(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "chgnet-0.3.0" in err[0] and "sevenn-7net-0" in err[0]


def test_partial_freezing_of_the_first_blocks(tmp_path):
    from tlsearch.model.backbone import block_of, trunk_names
    from tlsearch.model.foundation import load_foundation
    from tlsearch.transfer.strategies import prepare_finetune

    model, _ = load_foundation("chgnet-0.3.0")
    blocks = trunk_names(model)
    ft = prepare_finetune(model, "unfreeze_all", output_features=1, freeze_first=7)
    for name, param in ft.named_parameters():
        index = block_of(name, blocks)
        assert param.requires_grad == (index is None or index >= 7), name
    with pytest.raises(ValueError, match="freeze_first must be in 0"):
        prepare_finetune(model, "unfreeze_all", freeze_first=len(blocks) + 1)
    metrics = finetune_run(
        _run(tmp_path, "partial"), None, "unfreeze_all", foundation="chgnet-0.3.0",
        freeze_first=7, progress=False,
    )  # fmt: skip
    assert metrics["provenance"]["freeze_first"] == 7 and np.isfinite(metrics["test"]["mae"])


@pytest.mark.parametrize("foundation", ["chgnet-0.3.0", "sevenn-7net-0"])
def test_the_cached_frozen_trunk_is_exact(tmp_path, foundation):
    """new_head on cached features == new_head through the whole model every batch."""
    pytest.importorskip(foundation.split("-")[0])
    runs = {}
    for enabled in (True, False):
        cfg = _run(tmp_path, f"ft{enabled}", frozen_trunk={"enabled": enabled})
        runs[enabled] = finetune_run(cfg, None, "new_head", foundation=foundation,
                                     progress=False)  # fmt: skip
    assert runs[True]["frozen_trunk"]["used"] and not runs[False]["frozen_trunk"]["used"]
    for key in ("mae", "rmse"):
        assert runs[True]["test"][key] == pytest.approx(runs[False]["test"][key], rel=1e-4)
