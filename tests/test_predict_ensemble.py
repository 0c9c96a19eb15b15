"""tlsearch predict with an ensemble: the mean of its members, and their spread."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from tlsearch.cli.main import main
from tlsearch.graphs.settings import GraphSettings
from tlsearch.model.alignn import ALIGNN
from tlsearch.model.config import ALIGNNConfig
from tlsearch.prediction import model_files, predict
from tlsearch.training.checkpoint import save_model
from tlsearch.training.config import TrainConfig
from tlsearch.training.scaler import TargetScaler

CFG = ALIGNNConfig(alignn_layers=1, gcn_layers=1, hidden_features=16, embedding_features=8)


def _member(path, seed):
    torch.manual_seed(seed)
    model = ALIGNN(CFG).eval()
    scaler = TargetScaler.fit(np.array([1.0, 2.0, 4.0]), "paper")
    return save_model(path, model, CFG, scaler, GraphSettings(), TrainConfig(), ["target"])


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_ensemble_folder_predicts_the_mean_and_spread(tmp_path, capsys):
    folder = tmp_path / "best"
    members = []
    for seed in (0, 1, 2):
        members.append(_member(folder / f"seed{seed}" / "model.pt", seed))
    manifest = {"members": [{"seed": s, "model": f"seed{s}/model.pt"} for s in (0, 1, 2)]}
    (folder / "ensemble.json").write_text(json.dumps(manifest))
    assert model_files(folder) == [folder / f"seed{s}" / "model.pt" for s in (0, 1, 2)]

    singles = []
    for i, member in enumerate(members):
        out = tmp_path / f"single{i}.csv"
        predict(member, "generated:8:3", out, device="cpu", progress=False)
        singles.append([float(r["prediction"]) for r in _read(out)])
    singles = np.array(singles)

    args = [
        "predict",
        "--model",
        str(folder),
        "--data",
        "generated:8:3",
        "--out",
        str(tmp_path / "ens.csv"),
        "--device",
        "cpu",
        "--no-cache",
        "--no-progress",
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_models"] == 3 and summary["metrics"]["n"] == 8
    rows = _read(tmp_path / "ens.csv")
    assert list(rows[0]) == ["id", "target", "prediction", "prediction_std"]
    got = np.array([float(r["prediction"]) for r in rows])
    spread = np.array([float(r["prediction_std"]) for r in rows])
    np.testing.assert_allclose(got, singles.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(spread, singles.std(axis=0, ddof=1), rtol=1e-4, atol=1e-6)
    assert (spread > 0).all()


def test_ensemble_members_must_match(tmp_path):
    a = _member(tmp_path / "a.pt", 0)
    torch.manual_seed(1)
    scaler = TargetScaler.fit(np.array([1.0, 2.0]), "paper")
    b = save_model(
        tmp_path / "b.pt",
        ALIGNN(CFG).eval(),
        CFG,
        scaler,
        GraphSettings(max_neighbors=8),
        TrainConfig(),
        ["target"],
    )
    with pytest.raises(ValueError, match="members must match"):
        predict([a, b], "generated:4:3", tmp_path / "x.csv", device="cpu", progress=False)
    with pytest.raises(FileNotFoundError, match="neither ensemble.json nor model.pt"):
        model_files(tmp_path)
