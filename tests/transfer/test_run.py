"""Pre-train -> fine-tune (strategies, sampling), scratch, MPT, alignn checkpoints: end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from tlsearch.cli.main import main
from tlsearch.model.alignn import ALIGNN
from tlsearch.model.heads import HeadedBackbone
from tlsearch.structures.generate import generate_dataset, write_jarvis_json
from tlsearch.training.checkpoint import load_model, read_bundle
from tlsearch.training.config import RunConfig, TrainConfig
from tlsearch.transfer.run import finetune_run, load_pretrained, mpt_pretrain_run, pretrain_run
from tlsearch.transfer.strategies import STRATEGY_NAMES


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tl")
    source = generate_dataset(40, seed=1).records
    target = generate_dataset(40, seed=2).records
    return {
        "root": root,
        "src": str(write_jarvis_json(source, root / "src.json")),
        "tgt": str(write_jarvis_json(target[:30], root / "tgt.json")),
        "test": str(write_jarvis_json(target[30:], root / "test.json")),
    }


def _run(files, out, tiny_config, **train) -> RunConfig:
    recipe = {"epochs": 2, "seed": 0, "device": "cpu", "early_stopping_patience": None} | train
    return RunConfig(
        data=files["tgt"], test=files["test"], out_dir=files["root"] / out,
        cache_dir=files["root"] / "cache", model=tiny_config, train=TrainConfig(**recipe),
    )  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(files):
    from tests.transfer.conftest import TINY

    run = _run(files, "pt", TINY).model_copy(update={"data": files["src"], "test": None})
    metrics = pretrain_run(run, size=25, progress=False)
    assert metrics["provenance"]["pt_size"] == 25 and metrics["n_train"] + metrics["n_val"] == 25
    return files["root"] / "pt"


def _predictions(path):
    with open(path) as handle:
        return {row["id"]: float(row["prediction"]) for row in csv.DictReader(handle)}


def test_finetune_new_head_saves_a_model_that_reloads_and_predicts_the_same(
    files, pretrained, tiny_config
):
    metrics = finetune_run(
        _run(files, "ft_nh", tiny_config), pretrained, "new_head", size=20, sampling="uniform",
        progress=False,
    )  # fmt: skip
    assert metrics["provenance"]["strategy"] == "new_head"
    assert metrics["n_train"] + metrics["n_val"] == 20 and metrics["test"]["n"] == 10
    model, bundle = load_model(files["root"] / "ft_nh" / "model.pt")
    assert isinstance(model, HeadedBackbone) and bundle.architecture["n_new_layers"] == 1
    assert bundle.extra["pt_source"] == files["src"]
    saved = _predictions(files["root"] / "ft_nh" / "predictions_test.csv")
    model_file = str(files["root"] / "ft_nh" / "model.pt")
    out = str(files["root"] / "p.csv")
    main(["-q", "predict", "--model", model_file, "--data", files["test"], "--out", out,
          "--no-progress", "--no-cache"])  # fmt: skip
    again = _predictions(files["root"] / "p.csv")
    assert again.keys() == saved.keys()
    assert all(abs(again[k] - saved[k]) < 1e-4 for k in saved)


def test_last_layer_changes_only_the_head(files, pretrained, tiny_config):
    finetune_run(_run(files, "ft_ll", tiny_config), pretrained, "last_layer", progress=False)
    pt_state, _ = read_bundle(pretrained / "model.pt")
    ft_state, _ = read_bundle(files["root"] / "ft_ll" / "model.pt")
    changed = {k for k in pt_state if not torch.equal(pt_state[k], ft_state[k])}
    assert changed == {"fc.weight", "fc.bias"}


def test_every_strategy_runs(files, pretrained, tiny_config):
    for strategy in STRATEGY_NAMES:
        if strategy == "scratch":
            continue
        metrics = finetune_run(
            _run(files, f"ft_{strategy}", tiny_config, epochs=1), pretrained, strategy,
            size=12, progress=False,
        )  # fmt: skip
        assert metrics["epochs_run"] == 1, strategy


def test_scratch_goes_through_the_same_path(files, tiny_config):
    metrics = finetune_run(_run(files, "scratch", tiny_config), None, "scratch", size=20,
                           progress=False)  # fmt: skip
    assert metrics["provenance"]["kind"] == "scratch"
    with pytest.raises(ValueError, match="needs a pre-trained model"):
        finetune_run(_run(files, "x", tiny_config), None, "unfreeze_all", progress=False)


def test_alignn_checkpoint_is_accepted_and_a_foreign_file_is_explained(
    files, tiny_config, tmp_path
):
    alignn_file = tmp_path / "checkpoint_300.pt"
    torch.save({"model": ALIGNN(tiny_config).state_dict()}, alignn_file)
    model, info = load_pretrained(alignn_file)
    assert info["pt_format"] == "alignn" and model.config.hidden_features == 16
    metrics = finetune_run(_run(files, "ft_alignn", tiny_config), alignn_file, "unfreeze_all",
                           progress=False)  # fmt: skip
    assert metrics["provenance"]["pt_format"] == "alignn"
    junk = tmp_path / "junk.pt"
    torch.save({"model": {"some.weight": torch.zeros(3)}}, junk)
    with pytest.raises(ValueError):
        load_pretrained(junk)


def test_mpt_pretrain_excludes_the_target_then_finetunes_with_two_new_layers(files, tiny_config):
    run = _run(files, "mpt", tiny_config).model_copy(update={"test": None})
    metrics = mpt_pretrain_run(
        run, {"A": files["src"], "B": files["tgt"]}, exclude="B",
        exclude_specs=[files["tgt"], files["test"]], progress=False,
    )  # fmt: skip
    report = metrics["provenance"]["mpt_report"]["exclusion"]
    assert report["target"] == "B" and report["records_after"] < report["records_before"]
    model, bundle = load_model(files["root"] / "mpt" / "model.pt")
    assert type(model).__name__ == "MultiPropertyALIGNN"
    assert bundle.train_config.loss == "masked_l1"
    assert bundle.train_config.mpt_loss_denominator == "n_properties"  # the paper's Eq. 1
    assert metrics["mpt_loss_denominator"] == "n_properties"
    ft = finetune_run(_run(files, "ft_mpt", tiny_config), files["root"] / "mpt", progress=False)
    assert ft["provenance"]["strategy"] == "mpt_finetune"
    ft_model, _ = load_model(files["root"] / "ft_mpt" / "model.pt")
    assert isinstance(ft_model, HeadedBackbone) and ft_model.n_new_layers == 2


def test_cli_transfer_commands(files, pretrained, capsys):
    common = ["--hidden", "16", "--embedding", "8", "--alignn-layers", "1", "--gcn-layers", "1",
              "--epochs", "1", "--no-progress", "--no-cache", "--device", "cpu"]  # fmt: skip
    out = files["root"] / "cli_ft"
    code = main(["finetune", "--pretrained", str(pretrained), "--data", files["tgt"], "--test",
                 files["test"], "--strategy", "interaction_3b", "--size", "15", "--sampling",
                 "weighted", "--out", str(out), *common])  # fmt: skip
    assert code == 0
    provenance = json.loads((out / "metrics.json").read_text())["provenance"]
    assert provenance["sampling"] == "weighted" and provenance["strategy"] == "interaction_3b"
    assert main(["mpt", "pretrain", "--data", "nonsense", "--out", str(out), *common]) == 2
    assert "NAME=SPEC" in capsys.readouterr().err


def test_mpt_loss_denominator_reaches_the_loss_metrics_and_config(files, monkeypatch):
    import yaml

    from tlsearch.training import loop

    seen: list[str] = []
    real = loop.masked_l1

    def spy(pred, target, mask, denominator="n_properties"):
        seen.append(denominator)
        return real(pred, target, mask, denominator)

    monkeypatch.setattr(loop, "masked_l1", spy)
    out = files["root"] / "mpt_known"
    code = main([
        "mpt", "pretrain", "--data", f"A={files['src']}", f"B={files['tgt']}",
        "--loss-denominator", "known", "--out", str(out), "--hidden", "16", "--embedding", "8",
        "--alignn-layers", "1", "--gcn-layers", "1", "--epochs", "2", "--no-progress",
        "--no-cache", "--device", "cpu",
    ])  # fmt: skip
    assert code == 0
    assert seen and set(seen) == {"known"}  # training batches and validation
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["loss"] == "masked_l1" and metrics["mpt_loss_denominator"] == "known"
    assert metrics["early_stopping_monitor"] == "val_loss"
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["train"]["mpt_loss_denominator"] == "known"
    with open(out / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert metrics["best_epoch"] == int(best["epoch"])
    assert metrics["best_val_loss_normalised"] == pytest.approx(float(best["val_loss"]))


def test_finetune_from_an_mpt_model_with_several_heads(files, tiny_config):
    run = _run(files, "mpt2", tiny_config).model_copy(update={"test": None})
    mpt_pretrain_run(run, {"A": files["src"], "B": files["tgt"]}, progress=False)
    _, bundle = read_bundle(files["root"] / "mpt2" / "model.pt")
    assert bundle.architecture["properties"] == ["A", "B"]
    ft = finetune_run(_run(files, "ft_mpt2", tiny_config), files["root"] / "mpt2", progress=False)
    assert ft["test"]["n"] == 10


def test_pt_ft_and_scratch_use_their_own_datasets_pool_scaler(files, tiny_config):
    """PT on a subset: the PT data's scaler; FT (any size, sampling) and scratch: the FT data's."""
    from tlsearch.structures.load import load_data
    from tlsearch.training.scaler import TargetScaler

    def pool_fingerprint(path):
        values = [r.targets["target"] for r in load_data(path).records]
        return TargetScaler.fit(np.array(values), "paper").fingerprint()

    recipe = {"epochs": 1, "target_normalisation": "paper"}
    pt_run = _run(files, "pt_paper", tiny_config, **recipe)
    pt = pretrain_run(pt_run.model_copy(update={"data": files["src"], "test": None}), size=20,
                      progress=False)  # fmt: skip
    assert pt["scaler_id"] == pool_fingerprint(files["src"])
    fingerprints = set()
    for size, sampling in ((10, "random"), (20, "uniform")):
        ft = finetune_run(
            _run(files, f"ft_units_{size}", tiny_config, **recipe), files["root"] / "pt_paper",
            "unfreeze_all", size=size, sampling=sampling, progress=False,
        )  # fmt: skip
        fingerprints.add(ft["scaler_id"])
        saved = read_bundle(files["root"] / f"ft_units_{size}" / "model.pt")[1].scaler
        assert saved.fingerprint() == ft["scaler_id"]
    scratch = finetune_run(_run(files, "scratch_units", tiny_config, **recipe), None, "scratch",
                           size=12, progress=False)  # fmt: skip
    fingerprints.add(scratch["scaler_id"])
    assert fingerprints == {pool_fingerprint(files["tgt"])} != {pt["scaler_id"]}
