"""The real path end to end: search_spaces/quickstart.yaml through Ray with the real jobs
(generated crystals, tiny ALIGNN, 2 epochs), ending with a Parquet dataset and a plot; and a PT
job on 2 DDP workers (Ray Train TorchTrainer) from its Tune trial."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds

from tests.search.conftest import REPO
from tlsearch.cli.main import main as search_cli
from tlsearch.cli.main import main as tlsearch_cli
from tlsearch.results.schema import RUN_SCHEMA
from tlsearch.search.plan.spec import load_spec
from tlsearch.search.run.driver import run_search
from tlsearch.search.watch.quickplot import plot_test_mae

QUICKSTART = REPO / "search_spaces" / "quickstart.yaml"
TINY_DATA = {  # the quickstart's datasets, smaller
    "source": {"data": "generated:120:11"},
    "target": {"data": "generated:60:12", "test": "generated:20:13"},
}


def test_quickstart_end_to_end(tmp_path, local_ray, capsys):
    spec = load_spec(
        QUICKSTART,
        {
            "storage": str(tmp_path / "results"),
            "datasets": TINY_DATA,
            "pt_sizes": [100],
            "ft_sizes": [20, 40],
            "seeds": [0, 1],
            "train": {
                "epochs": 2,
                "batch_size": 16,
                "early_stopping_patience": None,
                "target_normalisation": "paper",
            },
            "pretrain": {"train": {"epochs": 2}},
        },  # fmt: skip
    )
    status = run_search(spec, verbose=0)
    assert (status.planned, status.completed, status.failed) == (12, 12, 0)
    assert status.pretrain_counts == {"ok": 1}
    runs = tmp_path / "results" / "quickstart" / "runs"
    table = ds.dataset(runs, schema=RUN_SCHEMA).to_table()  # any Parquet reader works too
    assert table.num_rows == 13
    rows = table.to_pylist()
    seed_runs = [r for r in rows if r["kind"] != "pretrain"]
    assert {r["kind"] for r in seed_runs} == {"scratch", "finetune"}
    for row in seed_runs:
        assert row["test_mae"] is not None and row["test_mae_phys"] is not None
        assert row["epochs_run"] == 2 and row["n_test"] == 20
        assert (tmp_path / "results" / row["checkpoint_uri"]).is_file()  # storage-relative
    finetuned = [r for r in seed_runs if r["kind"] == "finetune"]
    assert all(r["pt_run_id"].startswith("pt-") for r in finetuned)
    assert len(list((tmp_path / "results" / "pretrained").glob("*/model.pt"))) == 1
    assert plot_test_mae(tmp_path / "results" / "quickstart").stat().st_size > 1000

    assert search_cli(["runs", str(tmp_path / "results" / "quickstart")]) == 0
    out = capsys.readouterr().out
    assert "planned 12, completed 12, failed 0, diverged 0, remaining 0" in out
    assert "unfreeze_all" in out and "last_layer" in out

    # The analysis reads these rows; best-pair exports real models that predict as an ensemble.
    results_dir = str(tmp_path / "results" / "quickstart")
    assert tlsearch_cli(["analyze", results_dir, "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "figures" / "heatmap_scratch.png").is_file()
    best = tmp_path / "best"
    args = ["best-pair", "--target", "target", "--results", results_dir, "--out", str(best)]
    assert tlsearch_cli(args) == 0
    assert "selected on val_mae" in capsys.readouterr().out
    args = ["predict", "--model", str(best / "model"), "--data", "generated:6:5",
            "--out", str(tmp_path / "p.csv"), "--cache-dir", str(tmp_path / "c")]  # fmt: skip
    assert tlsearch_cli(args) == 0
    assert '"n_models": 2' in capsys.readouterr().out


def test_pretraining_on_two_ddp_workers(tmp_path, local_ray):
    spec = load_spec(
        QUICKSTART,
        {
            "name": "ddp",
            "storage": str(tmp_path / "results"),
            "datasets": TINY_DATA,
            "pt_sizes": [100],
            "scratch": False,
            "ft_sizes": [20],
            "strategies": ["unfreeze_all"],
            "seeds": [0],
            "train": {"epochs": 1, "batch_size": 16},
            "pretrain": {
                "num_workers": 2,
                "cpus_per_worker": 0.5,
                "resources": {"cpu": 1},
                "train": {"epochs": 2},
            },
        },  # fmt: skip
    )
    status = run_search(spec, verbose=0)
    assert status.completed == 1 and status.pretrain_counts == {"ok": 1}
    pt = [r for r in RunStoreRows(spec) if r["kind"] == "pretrain"][0]
    assert pt["epochs_run"] == 2 and pt["val_mae"] is not None and pt["n_train"] == 90
    job = (Path(spec.storage) / pt["checkpoint_uri"]).with_name("job.json").read_text()
    assert '"num_workers":2' in job.replace(" ", "")


def RunStoreRows(spec):  # noqa: N802 - reads like a table name
    from tlsearch.results.store import RunStore

    return RunStore.for_search(spec.storage, spec.name).rows()
