"""``tlsearch bench frozen``: FT seed-runs with the frozen trunk computed once vs every epoch.

For each head-only FT strategy (``last_layer``, ``new_head``, ``new_head_freeze_6`` by
default) on ``dc_trial1_800`` with the paper's model (4 ALIGNN + 4 GCN layers, hidden 256), one
seed-run on today's graph path (``train.frozen_trunk.enabled: false``), one on the cached path
with an empty feature cache (``cold``: its time includes computing the features) and one more
seed-run on the cached path (``warm``: a cache hit, as every later seed of a search). Reported:
wall time of each run, ``train_seconds``, their ratios, the largest test-prediction difference
between the graph and the cold cached run (same seed: 0 up to float rounding), and a projection
to more epochs from the measured per-epoch times (the paper's runs train 500 epochs; on 2
CPUs measure a few and read the projection).

The PT model is ``--pretrained`` or, by default, a freshly initialised paper-size ALIGNN saved as
a ``model.pt`` (the weights do not change the timing). The graphs are built once before timing.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

PAPER = Path("..") / "shared" / "data" / "paper"
DEFAULT_DATA = PAPER / "ft" / "dc" / "dc_trial1_800.json.gz"
DEFAULT_TEST = PAPER / "test" / "dc_test.json.gz"
HEAD_ONLY = ["last_layer", "new_head", "new_head_freeze_6"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tlsearch bench frozen",
        description="FT seed-runs: frozen trunk cached vs computed every epoch (ratios printed).",
    )
    p.add_argument("--data", default=str(DEFAULT_DATA), help="FT data (default dc_trial1_800)")
    p.add_argument("--test", default=str(DEFAULT_TEST), help="test data ('none': no test set)")
    p.add_argument("--pretrained", default=None, help="PT model (default: a fresh paper model)")
    p.add_argument("--strategies", nargs="+", default=HEAD_ONLY, help="FT strategies")
    p.add_argument("--epochs", type=int, default=5, help="epochs per seed-run (paper: 500)")
    p.add_argument("--size", type=int, default=None, help="FT training set size (all)")
    p.add_argument("--hidden", type=int, default=256, help="model width (paper: 256)")
    p.add_argument("--layers", type=int, default=4, help="ALIGNN and GCN layers each (paper: 4)")
    p.add_argument("--batch-size", type=int, default=None, help="(default: the paper's rule)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--project", type=int, default=500, help="project the ratio to N epochs")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--work", type=Path, default=None, help="work folder (default: temporary)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p


def _pretrained(args: argparse.Namespace, work: Path) -> str:
    """``--pretrained``, or a freshly initialised paper-size ALIGNN saved as ``model.pt``."""
    if args.pretrained:
        return args.pretrained
    from tlsearch.graphs.settings import GraphSettings
    from tlsearch.model.alignn import ALIGNN
    from tlsearch.model.config import ALIGNNConfig
    from tlsearch.training.checkpoint import save_model
    from tlsearch.training.scaler import TargetScaler

    torch.manual_seed(args.seed)
    config = ALIGNNConfig(
        hidden_features=args.hidden, alignn_layers=args.layers, gcn_layers=args.layers
    )
    model = ALIGNN(config).eval()
    path = work / "pt" / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(
        path, model, model.config, TargetScaler.identity(), GraphSettings(), None, ["target"]
    )
    return str(path)


def _run_config(args: argparse.Namespace, work: Path, name: str, cached: bool, seed: int):
    from tlsearch.training.config import RunConfig

    train = {
        "epochs": args.epochs, "seed": seed, "device": args.device, "num_threads": args.threads,
        "batch_size": args.batch_size, "early_stopping_patience": None,
        "frozen_trunk": {"enabled": cached},
    }  # fmt: skip
    return RunConfig(
        data=args.data,
        test=None if args.test == "none" else args.test,
        out_dir=work / "runs" / name,
        cache_dir=work / "cache",
        train=train,
    )


def _timed_run(args, work: Path, pretrained: str, strategy: str, name: str, cached: bool, seed):
    """One seed-run: (wall seconds, metrics)."""
    from tlsearch.transfer.run import finetune_run

    cfg = _run_config(args, work, name, cached, seed)
    start = time.perf_counter()
    metrics = finetune_run(cfg, pretrained, strategy, size=args.size, progress=False)
    return time.perf_counter() - start, metrics


def _test_difference(work: Path, a: str, b: str) -> float | None:
    """Largest |prediction difference| between two runs' test (else validation) CSVs."""
    import csv

    for part in ("test", "val"):
        files = [work / "runs" / name / f"predictions_{part}.csv" for name in (a, b)]
        if all(f.is_file() for f in files):
            rows = []
            for f in files:
                with f.open() as handle:
                    rows.append({r["id"]: float(r["prediction"]) for r in csv.DictReader(handle)})
            return max(abs(rows[0][k] - rows[1][k]) for k in rows[0])
    return None


def _projection(graph: dict, cold: dict, epochs: int) -> float:
    """graph / cached run time at ``epochs`` epochs, from the measured per-epoch times."""
    graph_epoch = graph["train_seconds"] / graph["epochs_run"]
    features = cold["frozen_trunk"]["feature_seconds"]
    cached_epoch = (cold["train_seconds"] - features) / cold["epochs_run"]
    return graph_epoch * epochs / (features + cached_epoch * epochs)


def bench_strategy(args, work: Path, pretrained: str, strategy: str) -> dict[str, Any]:
    """Graph path, cold cached and warm cached seed-runs of ``strategy``; times and ratios."""
    shutil.rmtree(work / "cache" / "frozen_trunk", ignore_errors=True)  # cold: no features
    graph_wall, graph = _timed_run(args, work, pretrained, strategy, f"{strategy}-graph", False,
                                   args.seed)  # fmt: skip
    cold_wall, cold = _timed_run(args, work, pretrained, strategy, f"{strategy}-cold", True,
                                 args.seed)  # fmt: skip
    warm_wall, warm = _timed_run(args, work, pretrained, strategy, f"{strategy}-warm", True,
                                 args.seed + 1)  # fmt: skip
    result = {
        "epochs": args.epochs,
        "n_train": graph["n_train"],
        "n_val": graph["n_val"],
        "n_test": graph["n_test"],
        "graph_wall_s": graph_wall,
        "cached_cold_wall_s": cold_wall,
        "cached_warm_wall_s": warm_wall,
        "graph_train_s": graph["train_seconds"],
        "cached_cold_train_s": cold["train_seconds"],
        "cached_warm_train_s": warm["train_seconds"],
        "feature_s": cold["frozen_trunk"]["feature_seconds"],
        "warm_cache_hit": warm["frozen_trunk"]["cache_hit"],
        "ratio_wall_cold": graph_wall / cold_wall,
        "ratio_wall_warm": graph_wall / warm_wall,
        "ratio_train_cold": graph["train_seconds"] / cold["train_seconds"],
        "ratio_train_warm": graph["train_seconds"] / warm["train_seconds"],
        f"projected_ratio_train_cold_{args.project}_epochs": _projection(graph, cold, args.project),
        "max_abs_prediction_difference": _test_difference(
            work, f"{strategy}-graph", f"{strategy}-cold"
        ),
        "cached_used": cold["frozen_trunk"]["used"],
    }
    logger.info(
        "frozen %s (%d epochs, %d train + %d val + %d test): graph %.1f s, cached %.1f s "
        "(features %.1f s), warm %.1f s; wall ratio %.1fx cold, %.1fx warm; train_seconds "
        "ratio %.1fx cold, %.1fx warm; projected to %d epochs %.0fx; max |pred diff| %.2g",
        strategy, args.epochs, result["n_train"], result["n_val"], result["n_test"], graph_wall,
        cold_wall, result["feature_s"], warm_wall, result["ratio_wall_cold"],
        result["ratio_wall_warm"], result["ratio_train_cold"], result["ratio_train_warm"],
        args.project, result[f"projected_ratio_train_cold_{args.project}_epochs"],
        result["max_abs_prediction_difference"] or 0.0,
    )  # fmt: skip
    return result


def _warm_graphs(args: argparse.Namespace, work: Path) -> None:
    """Build the graph cache of the FT and test data before anything is timed."""
    from tlsearch.training.run import prepare_run_data

    cfg = _run_config(args, work, "graphs", False, args.seed)
    for spec in (cfg.data, cfg.test):
        if spec is not None:
            prepare_run_data(cfg, spec, names=None, role="bench", progress=False)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, log one line per strategy and the JSON; returns 0."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    quiet = [
        logging.getLogger(n) for n in ("tlsearch.training", "tlsearch.transfer", "tlsearch.graphs")
    ]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.WARNING)  # the runs' own lines would bury the table
    try:
        return _run(args)
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="tlsearch-bench-frozen-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        pretrained = _pretrained(args, work)
        _warm_graphs(args, work)
        results = {s: bench_strategy(args, work, pretrained, s) for s in args.strategies}
    logger.info("%s", json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
