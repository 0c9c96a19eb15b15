"""The Python API (``import tlsearch``): cheap to import, what the CLI runs, pandas out, and
models that take pymatgen/ASE structures and give the ensemble's mean and spread."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from pymatgen.core import Lattice, Structure

import tlsearch
from tests.analysis.synthetic import write_results
from tlsearch.cli.main import main
from tlsearch.graphs.settings import GraphSettings
from tlsearch.model.alignn import ALIGNN
from tlsearch.model.config import ALIGNNConfig
from tlsearch.training.checkpoint import save_model
from tlsearch.training.config import TrainConfig
from tlsearch.training.scaler import TargetScaler

TINY = ALIGNNConfig(alignn_layers=1, gcn_layers=1, hidden_features=16, embedding_features=8)


def test_import_is_cheap_and_lists_the_api():
    code = (
        "import sys, tlsearch; "
        "print([m for m in ('ray', 'torch', 'pandas', 'tlsearch.api') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    names = {"train", "pretrain", "finetune", "run_search", "load_runs", "best_pair"}
    names |= {"compare_paper", "predict", "load_model", "open_search", "analyze"}
    assert names <= set(dir(tlsearch)) and names <= set(tlsearch.__all__)
    assert callable(tlsearch.predict) and tlsearch.run_search.__doc__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tlsearch.nope  # noqa: B018


def _ensemble(folder, seeds=(0, 1, 2)):
    """An ensemble folder as ``best-pair`` exports it (tiny random models, one per seed)."""
    members = []
    for seed in seeds:
        torch.manual_seed(seed)
        scaler = TargetScaler.fit(np.array([1.0, 2.0, 4.0]), "paper")
        path = folder / f"seed{seed}" / "model.pt"
        save_model(
            path, ALIGNN(TINY).eval(), TINY, scaler, GraphSettings(), TrainConfig(), ["target"]
        )
        members.append({"seed": seed, "model": f"seed{seed}/model.pt"})
    (folder / "ensemble.json").write_text(json.dumps({"members": members}))
    return folder


def _structures():
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    si = Structure(Lattice.cubic(5.43), ["Si"] * 2, [[0, 0, 0], [0.25, 0.25, 0.25]])
    return [nacl, bulk("Cu", "fcc", a=3.61), si]


def test_an_exported_ensemble_predicts_structures_in_two_lines(tmp_path):
    folder = _ensemble(tmp_path / "best" / "model")
    m = tlsearch.load_model(folder, device="cpu")
    df = m.predict(_structures())
    assert list(df.columns) == ["id", "mean", "std"] and list(df["id"]) == ["0", "1", "2"]
    assert df.attrs["n_models"] == 3 and m.n_models == 3

    singles = np.array(
        [
            tlsearch.predict(folder / f"seed{s}" / "model.pt", _structures(), device="cpu")["mean"]
            for s in (0, 1, 2)
        ]
    )
    np.testing.assert_allclose(df["mean"], singles.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(df["std"], singles.std(axis=0, ddof=1), rtol=1e-5)
    one = tlsearch.load_model(folder / "seed0" / "model.pt", device="cpu").predict(_structures())
    assert one["std"].isna().all()  # a single model has no spread

    # the same structures as files and as an ASE database give the same numbers
    ids = ["nacl", "cu", "si"]
    named = m.predict(_structures(), ids=ids)
    assert list(named["id"]) == ids
    import ase.db

    db = tmp_path / "s.db"
    with ase.db.connect(db) as con:
        for atoms, value in zip(_structures()[:2], (1.5, 2.5), strict=True):
            con.write(atoms, t=value)
    from_db = tlsearch.predict(folder, str(db), target="t", device="cpu", out=tmp_path / "p.csv")
    np.testing.assert_allclose(from_db["mean"], df["mean"][:2], rtol=1e-6)
    assert list(from_db["target"]) == [1.5, 2.5]
    csv = pd.read_csv(tmp_path / "p.csv")
    assert list(csv.columns) == ["id", "target", "prediction", "prediction_std"]
    cif = tmp_path / "si.cif"
    _structures()[2].to(filename=str(cif))
    from_cif = m.predict([cif])
    assert from_cif["id"].tolist() == ["si.cif"]
    assert from_cif["mean"][0] == pytest.approx(df["mean"][2], rel=1e-5)


def test_bad_structures_are_named_with_their_position_and_reason(tmp_path):
    m = tlsearch.load_model(_ensemble(tmp_path / "m", seeds=(0,)), device="cpu")
    molecule = Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])
    with pytest.raises(ValueError, match=r"structures\[1\] \(id '1'\): ASE Atoms has no 3D cell"):
        m.predict([bulk("Cu", "fcc", a=3.61), molecule])
    with pytest.raises(ValueError, match=r"structures\[0\] \(id '0'\): a dict is not a structure"):
        m.predict([{"cell": 1}])
    kept = m.predict([bulk("Cu", "fcc", a=3.61), molecule], errors="skip")
    assert kept["id"].tolist() == ["0"]


def test_train_returns_the_run_and_the_cli_does_the_same(tmp_path, capsys):
    recipe = {"epochs": 2, "batch_size": 8, "early_stopping_patience": None}
    model = TINY.model_dump(exclude={"output_features"})
    run = tlsearch.train(
        "generated:24:1", tmp_path / "api", test="generated:8:2", recipe=recipe, model=model,
        overrides={"cache_dir": None},
    )  # fmt: skip
    assert run.metrics["epochs_run"] == 2 and run.metrics["test"]["n"] == 8
    assert len(run.history()) == 2 and len(run.predictions("test")) == 8
    assert (run.out / "train.log").read_text().strip()
    df = run.load_model("cpu").predict(_structures())
    assert df["mean"].notna().all()

    args = ["train", "--data", "generated:24:1", "--test", "generated:8:2", "--out",
            str(tmp_path / "cli"), "--epochs", "2", "--batch-size", "8", "--patience", "0",
            "--hidden", "16", "--embedding", "8", "--alignn-layers", "1", "--gcn-layers", "1",
            "--no-cache", "-q"]  # fmt: skip
    assert main(args) == 0
    cli = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert cli["test"]["mae"] == pytest.approx(run.metrics["test"]["mae"], rel=1e-9)


@pytest.mark.parametrize(
    ("argv", "function"),
    [
        (["train", "--data", "D", "--out", "O"], "train"),
        (["pretrain", "--data", "D", "--out", "O", "--size", "5"], "pretrain"),
        (["finetune", "--data", "D", "--out", "O", "--pretrained", "P"], "finetune"),
        (["mpt", "pretrain", "--data", "A=a.json", "B=b.json", "--out", "O"], "mpt_pretrain"),
        (["analyze", "R", "--out", "O"], "analyze"),
        (["best-pair", "--target", "T", "--results", "R"], "best_pair"),
        (["compare-paper", "R"], "compare_paper"),
    ],
)
def test_every_command_runs_the_api_function(monkeypatch, argv, function):
    import tlsearch.api as api

    calls = []

    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        raise ValueError("stop here")  # reported by the CLI as a one-line error

    monkeypatch.setattr(api, function, fake)
    monkeypatch.setattr(api, "load_runs", lambda *a, **k: "rows")
    assert main(argv) == 2
    assert len(calls) == 1


@pytest.fixture
def synthetic(tmp_path):
    return write_results(tmp_path / "store")


def test_results_best_pair_and_comparison_as_dataframes(synthetic, tmp_path):
    search = tlsearch.open_search(synthetic)
    assert isinstance(search.table, pd.DataFrame) and len(search.table) == search.table.shape[0]
    assert {"strategy", "seeds", "test_mae"} <= set(search.table.columns)
    assert len(search.runs) == search.status.recorded
    assert len(tlsearch.load_runs(search).runs) == len(tlsearch.load_runs(synthetic).runs)

    best = search.best_pair("DC", out=tmp_path / "bp")
    assert (best.winner["pt_source"], best.winner["strategy"]) == ("FE", "unfreeze_all")
    assert "selected on val_mae" in best.answer()
    assert best.ensemble == tmp_path / "bp" / "model"
    assert (best.ensemble / "ensemble.json").is_file() and (
        tmp_path / "bp" / "ranking.csv"
    ).is_file()
    with pytest.raises(ValueError, match="results=... \\(computed\\) or search=SPEC"):
        tlsearch.best_pair("DC")

    anchors = tmp_path / "anchors.csv"
    rows = [
        {"experiment": "pairwise", "pt": "FE", "pt_size": 941, "ft": "DC", "ft_size": 800,
         "strategy": "unfreeze_all", "trial": t, "r2": 0.6, "mae": 0.02 + 0.001 * t}
        for t in range(3)
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(anchors, index=False)
    comparison = tlsearch.compare_paper(search, anchors=anchors, out=tmp_path / "cmp")
    assert len(comparison.matched) == 1 and "FE" in comparison.markdown()
    assert (tmp_path / "cmp" / "comparison.md").is_file()
    with pytest.raises(ValueError, match=r"experiment\(s\) \['mpt'\] not in the anchors"):
        tlsearch.compare_paper(search, anchors=anchors, experiments=["mpt"])
