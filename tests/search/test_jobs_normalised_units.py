"""Normalised metrics are in one unit per dataset: every FT size and sampling shares its scaler.

With ``normalise: paper`` the scaler is fitted once on the dataset's non-test pool (``pool.json``),
before the FT sample is drawn; so a fixed physical error reads the same normalised MAE (the
headline ``test_mae`` row column) in every run on that dataset.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch import nn

from tlsearch.jobs.config import DataRef, JobConfig
from tlsearch.jobs.run import run_job
from tlsearch.search.run.rows import metric_columns
from tlsearch.structures.load import load_data
from tlsearch.training.checkpoint import read_bundle
from tlsearch.training.loop import GraphLoader
from tlsearch.training.run import evaluate_and_write, prepare_data
from tlsearch.training.scaler import TargetScaler

TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}
RECIPE = {"epochs": 1, "device": "cpu", "target_normalisation": "paper", "num_threads": 1}
ERROR = 0.1  # eV/atom, the fixed physical error of the fake predictions


class FixedPredictions(nn.Module):
    """Predicts a given normalised value per structure id (whatever the graphs)."""

    def __init__(self, by_id: dict[str, float]) -> None:
        super().__init__()
        self.by_id = by_id
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, batch) -> torch.Tensor:
        values = [[self.by_id[i]] for i in batch.ids]
        return torch.tensor(values, dtype=torch.float32) + 0 * self.dummy


def _physical_targets(path) -> dict[str, float]:
    with open(path) as handle:
        return {row["id"]: float(row["target"]) for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four scratch jobs on one dataset: FT sizes 8 and 16, random and uniform sampling."""
    root = tmp_path_factory.mktemp("units")
    out = {}
    for size in (8, 16):
        for sampling in ("random", "uniform"):
            ref = DataRef(name="A", data="generated:40:3", size=size, sampling=sampling)
            job = JobConfig(
                kind="scratch", seed=0, data=ref, train=RECIPE, model=TINY,
                cache_dir=str(root / "cache"),
            )  # fmt: skip
            workdir = root / f"{size}-{sampling}"
            out[(size, sampling)] = (run_job(job, workdir), workdir)
    return out


def test_ft_sizes_and_samplings_share_the_pool_scaler(runs):
    fingerprints = set()
    for (size, _), (metrics, workdir) in runs.items():
        assert metrics["n_train"] + metrics["n_val"] == size
        scaler = TargetScaler.from_dict(metrics["scaler"])
        assert scaler.mode == "paper" and metrics["scaler_id"] == scaler.fingerprint()
        saved = read_bundle(workdir / "model.pt")[1].scaler  # model.pt stays self-contained
        assert saved.fingerprint() == scaler.fingerprint()
        pool = load_data(str(workdir / "data" / "pool.json")).records
        expected = TargetScaler.fit(np.array([r.targets["target"] for r in pool]), "paper")
        np.testing.assert_allclose(scaler.shift, expected.shift, rtol=1e-12)
        np.testing.assert_allclose(scaler.scale, expected.scale, rtol=1e-12)
        fingerprints.add(scaler.fingerprint())
    assert len(fingerprints) == 1


def test_a_fixed_physical_error_reads_the_same_headline_mae_everywhere(runs):
    headline = {}
    for key, (metrics, workdir) in runs.items():
        scaler = TargetScaler.from_dict(metrics["scaler"])
        test = prepare_data(
            str(workdir / "data" / "test.json"), names=["target"],
            graph_settings=read_bundle(workdir / "model.pt")[1].graph_settings, cache_dir=None,
            progress=False,
        )  # fmt: skip
        physical = _physical_targets(workdir / "predictions_test.csv")
        wrong = {rid: float(scaler.transform(np.array([[v + ERROR]]))[0, 0])
                 for rid, v in physical.items()}  # fmt: skip
        loader = GraphLoader(
            test.store, np.arange(len(test.store)), scaler.transform(test.targets), 4
        )
        part = evaluate_and_write(
            FixedPredictions(wrong), loader, scaler, ["target"], torch.device("cpu"),
            workdir / "fixed_error.csv",
        )  # fmt: skip
        columns = metric_columns({"test": part})
        assert columns["test_mae_phys"] == pytest.approx(ERROR, rel=1e-4)
        headline[key] = columns["test_mae"]
    first = next(iter(headline.values()))
    assert first == pytest.approx(ERROR / TargetScaler.from_dict(
        next(iter(runs.values()))[0]["scaler"]).scale[0], rel=1e-5)  # fmt: skip
    for key, value in headline.items():
        assert value == pytest.approx(first, rel=1e-9), key
