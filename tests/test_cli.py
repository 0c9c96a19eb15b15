"""The tlsearch command: help texts, one-line errors, and train -> predict end to end."""

from __future__ import annotations

import argparse
import csv
import json

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from tlsearch.cli.main import build_parser, main

SMALL_MODEL = ["--hidden", "16", "--embedding", "8", "--alignn-layers", "1", "--gcn-layers", "1"]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], ["train", "predict", "demo", "bench"]),
        (["train"], ["--data", "--test", "--out", "--epochs", "--seed", "--batch-size", "--lr",
                     "--patience", "--device", "--config", "--cache-dir", "--normalise",
                     "--hidden", "--alignn-layers", "--gcn-layers", "--threads", "--no-progress"]),
        (["predict"], ["--model", "--data", "--out", "--batch-size", "--device"]),
        (["demo"], ["--out", "--epochs", "--n"]),
    ],
)  # fmt: skip
def test_help_lists_every_flag(command, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in expected:
        assert flag in text


def _all_subparsers(parser, prefix=""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from _all_subparsers(sub, f"{prefix}{name} ")


def test_every_action_has_help_text():
    subparsers = list(_all_subparsers(build_parser()))
    assert {"train", "predict", "pretrain", "finetune", "mpt pretrain"} <= dict(subparsers).keys()
    for name, sub in subparsers:
        assert sub.description, name
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}"


def test_bench_help_or_passthrough(capsys):
    try:
        code = main(["bench", "--help"])
    except SystemExit as exc:  # tlsearch.bench's own argparse help
        code = exc.code
    assert code == 0
    assert "bench" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("tlsearch: error:")]
    assert len(lines) == 1 and "missing.json" in lines[0]
    assert "Traceback" not in err

    code = main(["train", "--data", "generated:5", "--out", str(tmp_path / "o"), "--epochs", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "train.epochs" in err and len(err.strip().splitlines()) == 1

    code = main(["train", "--out", str(tmp_path / "o")])
    assert code == 2 and "--data" in capsys.readouterr().err


def test_runs_of_a_missing_folder_is_bad_input_naming_it(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    assert main(["runs", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"no search folder {missing}" in err and "Traceback" not in err


def test_a_full_disk_has_its_own_exit_code_and_message(capsys):
    import errno

    from tlsearch.cli.common import EXIT_DISK_FULL, run_handler

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x.parquet")

    def wrapped(args):  # a write error re-raised as another error
        try:
            full(args)
        except OSError as exc:
            raise ValueError("could not write plan.json") from exc

    def arrow_full(args):  # pyarrow's form: the text, no errno
        raise OSError("[Errno 28] error writing runs/x.parquet: No space left on device")

    for handler in (full, wrapped, arrow_full):
        assert run_handler(argparse.Namespace(handler=handler)) == EXIT_DISK_FULL != 2
        assert "no space left on the device" in capsys.readouterr().err


def _read_csv(path):
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_train_then_predict_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    cache = tmp_path / "cache"
    args = ["train", "--data", "generated:40:1", "--test", "generated:12:2", "--out", str(out),
            "--epochs", "3", "--device", "cpu", "--cache-dir", str(cache), "--normalise", "paper",
            "--no-progress", *SMALL_MODEL]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["out"] == str(out)

    for name in ("model.pt", "metrics.json", "predictions_test.csv", "predictions_val.csv",
                 "config.yaml", "history.csv", "rejected.csv", "train.log"):  # fmt: skip
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for part, n in (("test", 12), ("val", 4)):
        assert set(metrics[part]) >= {"r2", "mae", "rmse", "n", "normalised"}
        assert metrics[part]["n"] == n
        assert set(metrics[part]["normalised"]) == {"r2", "mae", "rmse", "n"}
    required = ["best_epoch", "epochs_run", "early_stopped", "train_seconds", "n_rejected",
                "train_structures_per_second", "rejected", "graph_cache_hit"]  # fmt: skip
    assert set(required) <= set(metrics)
    assert metrics["epochs_run"] == 3 and metrics["n_train"] == 36
    assert metrics["graph_cache_hit"] == {"train": False, "test": False}
    assert metrics["n_rejected"] == {"train": 0, "test": 0}

    test_rows = _read_csv(out / "predictions_test.csv")
    assert list(test_rows[0]) == ["id", "target", "prediction"] and len(test_rows) == 12
    assert len(_read_csv(out / "predictions_val.csv")) == 4
    history = _read_csv(out / "history.csv")
    assert [r["epoch"] for r in history] == ["1", "2", "3"]
    assert "batch_size: 16" in (out / "config.yaml").read_text()

    preds = tmp_path / "preds.csv"
    args = ["predict", "--model", str(out / "model.pt"), "--data", "generated:12:2",
            "--out", str(preds), "--device", "cpu", "--no-cache", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["n"] == 12
    rows = _read_csv(preds)
    assert list(rows[0]) == ["id", "target", "prediction"]
    assert [r["id"] for r in rows] == [r["id"] for r in test_rows]
    for got, want in zip(rows, test_rows, strict=True):
        assert float(got["target"]) == pytest.approx(float(want["target"]))
        assert float(got["prediction"]) == pytest.approx(float(want["prediction"]), abs=1e-5)

    # A pickled table is read only with --allow-pickle (reading one runs the code it holds).
    table = tmp_path / "table.pkl"
    cells = [Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5] * 3]) for a in (5, 6)]
    pd.DataFrame({"structure": cells}).to_pickle(table)
    args = ["predict", "--model", str(out / "model.pt"), "--data", str(table),
            "--out", str(preds), "--device", "cpu", "--no-cache", "--no-progress"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "table.pkl: a pickle file runs any code" in err and "--allow-pickle" in err
    assert main([*args, "--allow-pickle"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 2

    # The resolved config reproduces the run; flags override it; the graph cache is reused.
    again = tmp_path / "again"
    args = ["train", "--config", str(out / "config.yaml"), "--out", str(again), "--epochs", "1"]
    assert main(args) == 0
    metrics = json.loads((again / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1
    assert metrics["graph_cache_hit"] == {"train": True, "test": True}


def test_demo_writes_parity_plot(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--n", "24", "--epochs", "1", "--device", "cpu",
            "--no-cache", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (out / "parity.png").stat().st_size > 1000
    assert (out / "data" / "train.json").is_file() and summary["test"]["n"] == 4
