"""The ``tlsearch`` command: ``train``, ``predict``, ``demo`` and ``bench``.

Bad input (missing files, invalid configs, unusable data) ends with one ``tlsearch: error: ...``
line on stderr and exit code 2; ``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydantic

from tlsearch.logutil import log_to_file, setup_logging

logger = logging.getLogger("tlsearch.cli")

EXIT_BAD_INPUT = 2
DEMO_MAX_ATOMS = 12  # small cells keep the demo's line graphs (and its run time) small

DATA_SPEC_HELP = (
    "a jarvis dataset-array .json/.json.gz file, a folder of CIF/POSCAR files with id_prop.csv, "
    "matminer:CODE, or generated:N[:SEED]"
)


class CLIError(ValueError):
    """A usage problem found by the CLI itself (reported like any bad input)."""


# --- parser ----------------------------------------------------------------------------------


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-v",
        "--verbose",
        dest="verbose_sub",
        action="count",
        default=0,
        help="more log output (-v: debug level and tracebacks on errors)",
    )
    p.add_argument(
        "-q", "--quiet", dest="quiet_sub", action="count", default=0, help="warnings only"
    )
    p.add_argument(
        "--no-progress", action="store_true", help="hide progress bars (shown only on a terminal)"
    )


def _add_runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        help="where to run (default auto: CUDA when present, else CPU)",
    )
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch")
    p.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="graph cache folder (default: $TLSEARCH_CACHE or ~/.cache/tlsearch/graphs)",
    )
    p.add_argument(
        "--no-cache", action="store_true", help="keep graphs in memory, write no graph cache"
    )


def _add_train_args(p: argparse.ArgumentParser) -> None:
    data = p.add_argument_group("data and outputs")
    arg = data.add_argument
    arg(
        "--data",
        metavar="SPEC",
        help=f"training data, split 90:10 into train and validation: {DATA_SPEC_HELP}",
    )
    arg("--test", metavar="SPEC", help="held-out test data (same forms as --data)")
    arg(
        "--allow-test-overlap",
        action="store_true",
        default=None,
        help="run even when --test has structures identical to --data ones (refused by "
        "default, naming them; metrics.json records the count as test_overlap)",
    )
    arg("--out", type=Path, metavar="DIR", help="run folder for the outputs")
    arg("--target", metavar="NAME", help="property to read (default: the loader's, 'target')")
    arg("--data-home", type=Path, metavar="DIR", help="where named datasets are looked up")
    arg(
        "--config",
        type=Path,
        metavar="YAML",
        help="run config (e.g. a run's config.yaml); flags given here override it",
    )

    recipe = p.add_argument_group("training recipe (defaults: the paper's)")
    arg = recipe.add_argument
    arg("--epochs", type=int, metavar="N", help="maximum epochs (default 500)")
    arg("--seed", type=int, metavar="K", help="seed of split, weights, batch order (default 0)")
    arg(
        "--batch-size",
        type=int,
        metavar="B",
        help="batch size (default 16; 64 above 1,000 training structures)",
    )
    arg("--lr", type=float, metavar="LR", help="AdamW and one-cycle peak learning rate (1e-3)")
    arg(
        "--weight-decay",
        type=float,
        metavar="WD",
        help="AdamW weight decay, never on biases or norm parameters (1e-5)",
    )
    arg(
        "--patience",
        type=int,
        metavar="N",
        help="early-stopping patience in epochs on the validation MAE (mpt pretrain: on the "
        "validation masked loss, its training objective); 0 disables (default: off, every "
        "epoch trains, as the paper's runs did)",
    )
    arg("--loss", choices=["mse", "l1"], help="training loss (default mse)")
    arg(
        "--scheduler",
        choices=["onecycle", "none"],
        help="learning-rate schedule (default onecycle, stepped every batch)",
    )
    arg("--val-fraction", type=float, metavar="F", help="validation share of --data (0.1)")
    arg(
        "--normalise",
        choices=["none", "paper", "standardise"],
        help="target normalisation, fitted once on the whole --data (before any sample or "
        "validation split is drawn): none (default; the paper's shared files are already "
        "normalised), paper (standardise, then min-max into [-1, 1]) or standardise; metrics "
        "are reported in physical units and also normalised ones",
    )
    arg("--log-every", type=int, metavar="N", help="log a line every N epochs (default 10)")

    model = p.add_argument_group("model size (defaults: the paper's ALIGNN; smaller is faster)")
    arg = model.add_argument
    arg("--hidden", type=int, metavar="H", help="hidden features (default 256)")
    arg("--embedding", type=int, metavar="E", help="embedding features (default 64)")
    arg("--alignn-layers", type=int, metavar="N", help="ALIGNN layers (default 4)")
    arg("--gcn-layers", type=int, metavar="N", help="GCN layers (default 4)")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="tlsearch",
        description="Train, evaluate and apply ALIGNN models for material properties.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="warnings only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = sub.add_parser(
        "train",
        help="train one model (scratch) and evaluate it",
        description="Train an ALIGNN model on --data (split 90:10 into train/validation with "
        "--seed), keep the weights of the best validation MAE, evaluate on --test, and write "
        "model.pt, metrics.json, predictions_val.csv, predictions_test.csv, history.csv, "
        "rejected.csv, train.log and the resolved config.yaml into --out.",
    )
    _add_train_args(train)
    _add_runtime(train)
    _add_common(train)

    predict = sub.add_parser(
        "predict",
        help="predict with a trained model.pt",
        description="Predict every structure of --data with a model.pt written by 'tlsearch "
        "train' and write a CSV id,prediction (plus target when the data has it), in physical "
        "units.",
    )
    predict.add_argument(
        "--model",
        type=Path,
        nargs="+",
        required=True,
        metavar="PATH",
        help="model.pt; several, or a folder with ensemble.json (tlsearch best-pair exports "
        "one), predict their mean and write prediction_std (the spread over the models)",
    )
    predict.add_argument("--data", required=True, metavar="SPEC", help=DATA_SPEC_HELP)
    predict.add_argument("--out", type=Path, required=True, metavar="CSV", help="output CSV")
    predict.add_argument(
        "--batch-size", type=int, default=64, metavar="B", help="structures per pass (64)"
    )
    predict.add_argument("--target", metavar="NAME", help="property read for the target column")
    predict.add_argument(
        "--data-home", type=Path, metavar="DIR", help="where named datasets are looked up"
    )
    _add_runtime(predict)
    _add_common(predict)

    demo = sub.add_parser(
        "demo",
        help="generate a small dataset, train a small model, plot parity",
        description="Generate a small real dataset (prototype crystals of up to 12 atoms with a "
        "Morse energy per atom), write it as jarvis json (data/train.json, data/test.json), "
        "train a small ALIGNN (1 ALIGNN + 1 GCN layer, 32 hidden features) for a few epochs "
        "with 'paper' target normalisation, and write parity.png of the test predictions with "
        "every 'tlsearch train' output. Takes about a minute on 2 CPUs.",
    )
    demo.add_argument("--out", type=Path, required=True, metavar="DIR", help="demo folder")
    demo.add_argument(
        "--n", type=int, default=150, metavar="N", help="structures (default 150; 20%% test)"
    )
    demo.add_argument("--epochs", type=int, default=20, metavar="N", help="epochs (default 20)")
    demo.add_argument("--seed", type=int, default=0, metavar="K", help="seed (default 0)")
    _add_runtime(demo)
    _add_common(demo)

    bench = sub.add_parser(
        "bench",
        help="benchmarks (tlsearch.bench); arguments are passed through",
        description="Run tlsearch.bench.main(ARGS) with the remaining arguments; "
        "'tlsearch bench --help' shows its own options when it is installed.",
        add_help=False,
    )
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for tlsearch.bench")
    bench.set_defaults(bench_help=bench.format_help())

    from tlsearch.transfer.cli import add_parsers as add_transfer_parsers

    add_transfer_parsers(sub, _add_train_args, _add_runtime, _add_common)

    from tlsearch.transfer.rank_cli import add_rank_parser

    add_rank_parser(sub)

    from tlsearch.search.cli import add_runs_parser, add_search_parser

    add_search_parser(sub)
    add_runs_parser(sub)

    from tlsearch.analysis.cli import add_parsers as add_analysis_parsers

    add_analysis_parsers(sub)
    return parser


# --- commands --------------------------------------------------------------------------------


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Nested RunConfig overrides from the flags that were given."""
    top = {
        "data": args.data,
        "test": args.test,
        "out_dir": args.out,
        "target": args.target,
        "data_home": args.data_home,
        "allow_test_overlap": args.allow_test_overlap,
    }
    train = {
        "epochs": args.epochs,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "weight_decay": args.weight_decay,
        "early_stopping_patience": args.patience,
        "loss": args.loss,
        "scheduler": args.scheduler,
        "val_fraction": args.val_fraction,
        "target_normalisation": args.normalise,
        "log_every": args.log_every,
        "device": args.device,
        "num_threads": args.threads,
    }
    model = {
        "hidden_features": args.hidden,
        "embedding_features": args.embedding,
        "alignn_layers": args.alignn_layers,
        "gcn_layers": args.gcn_layers,
    }
    out: dict[str, Any] = {k: v for k, v in top.items() if v is not None}
    train = {k: v for k, v in train.items() if v is not None}
    if train.get("early_stopping_patience") == 0:
        train["early_stopping_patience"] = None
    if train:
        out["train"] = train
    if any(v is not None for v in model.values()):
        out["model"] = {k: v for k, v in model.items() if v is not None}
    if args.no_cache:
        out["cache_dir"] = None
    elif args.cache_dir is not None:
        out["cache_dir"] = args.cache_dir
    return out


def cmd_train(args: argparse.Namespace) -> int:
    """``tlsearch train`` (``tlsearch.train``)."""
    from tlsearch.api import train

    run = train(config=args.config, overrides=train_overrides(args), progress=not args.no_progress)
    _print_json(run_summary(run.metrics, run.out))
    return 0


def run_summary(metrics: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """The short summary printed after ``train`` and ``demo``."""
    keys = (
        "val",
        "test",
        "best_epoch",
        "epochs_run",
        "early_stopped",
        "diverged",
        "train_seconds",
        "n_train",
        "n_val",
        "n_test",
        "n_rejected",
        "device",
    )
    summary: dict[str, Any] = {"out": str(out_dir)}
    summary.update({k: metrics.get(k) for k in keys})
    return summary


def cmd_predict(args: argparse.Namespace) -> int:
    """``tlsearch predict``."""
    import torch

    from tlsearch.prediction import predict
    from tlsearch.training.config import default_cache_dir

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cache_dir = None if args.no_cache else (args.cache_dir or default_cache_dir())
    summary = predict(
        args.model,
        args.data,
        args.out,
        args.batch_size,
        device=args.device or "auto",
        cache_dir=cache_dir,
        target=args.target,
        data_home=args.data_home,
        progress=not args.no_progress,
    )
    summary.pop("rejected", None)
    _print_json(summary)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``tlsearch demo``: generated data -> small model -> metrics and parity.png."""
    from tlsearch.model.config import ALIGNNConfig
    from tlsearch.plots import parity_plot
    from tlsearch.structures.generate import generate_dataset, write_jarvis_json
    from tlsearch.training.config import RunConfig, TrainConfig, default_cache_dir
    from tlsearch.training.run import train_run

    if args.n < 20:
        raise CLIError(f"--n must be at least 20 for a train/validation/test split, got {args.n}")
    records = generate_dataset(args.n, seed=args.seed, max_atoms=DEMO_MAX_ATOMS).records
    n_test = max(2, len(records) // 5)
    train_path = write_jarvis_json(records[n_test:], args.out / "data" / "train.json")
    test_path = write_jarvis_json(records[:n_test], args.out / "data" / "test.json")
    cfg = RunConfig(
        data=str(train_path),
        test=str(test_path),
        out_dir=args.out,
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
        train=TrainConfig(
            epochs=args.epochs,
            batch_size=16,
            seed=args.seed,
            target_normalisation="paper",
            early_stopping_patience=None,
            device=args.device or "auto",
            num_threads=args.threads,
            log_every=5,
        ),
        model=ALIGNNConfig(
            alignn_layers=1, gcn_layers=1, hidden_features=32, embedding_features=32
        ),
    )
    with log_to_file(args.out / "train.log"):
        metrics = train_run(cfg, progress=not args.no_progress)
        png = parity_plot(
            args.out / "predictions_test.csv",
            args.out / "parity.png",
            metrics,
            quantity="Morse energy per atom (eV)",
        )
    summary = run_summary(metrics, args.out)
    summary["parity_plot"] = str(png)
    _print_json(summary)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``tlsearch bench``: hand the remaining arguments to ``tlsearch.bench.main``."""
    try:
        import tlsearch.bench as bench
    except ImportError as exc:
        if {"-h", "--help"} & set(args.bench_args):
            sys.stdout.write(args.bench_help)
            return 0
        raise CLIError(
            f"tlsearch bench is not available: cannot import tlsearch.bench ({exc})"
        ) from exc
    result = bench.main(list(args.bench_args))
    return int(result or 0)


def cmd_transfer(args: argparse.Namespace) -> int:
    """``tlsearch pretrain``, ``finetune`` and ``mpt pretrain`` (``tlsearch.pretrain``...)."""
    from tlsearch.transfer import cli as transfer_cli

    handler = {
        "pretrain": transfer_cli.cmd_pretrain,
        "finetune": transfer_cli.cmd_finetune,
        "mpt": transfer_cli.cmd_mpt,
    }[args.command]
    run = handler(args, train_overrides(args))  # the API's function: it logs to train.log
    _print_json(run_summary(run.metrics, run.out))
    return 0


def cmd_rank_sources(args: argparse.Namespace) -> int:
    """``tlsearch rank-sources`` (:mod:`tlsearch.transfer.rank_cli`)."""
    from tlsearch.transfer.rank_cli import cmd_rank_sources as run

    return run(args)


COMMANDS = {
    "train": cmd_train,
    "predict": cmd_predict,
    "demo": cmd_demo,
    "bench": cmd_bench,
    "pretrain": cmd_transfer,
    "finetune": cmd_transfer,
    "mpt": cmd_transfer,
    "search": lambda args: args.handler(args),
    "runs": lambda args: args.handler(args),
    "analyze": lambda args: args.handler(args),
    "best-pair": lambda args: args.handler(args),
    "compare-paper": lambda args: args.handler(args),
    "rank-sources": cmd_rank_sources,
}


TRAINING_COMMANDS = ("train", "pretrain", "finetune", "mpt")


# --- entry point -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tlsearch`` console script; returns the exit code."""
    # OpenMP threads that spin at barriers stall badly when cores are shared (measured: a
    # layer 3x slower); passive waiting must be chosen before torch starts its thread pool.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":
        args.bench_args = [*extra, *args.bench_args]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    verbosity = (
        args.verbose + getattr(args, "verbose_sub", 0) - args.quiet - getattr(args, "quiet_sub", 0)
    )
    setup_logging(verbosity)
    try:
        if args.command in TRAINING_COMMANDS and not (args.data or args.config):
            raise CLIError(f"{args.command} needs --data SPEC (or --config YAML with data)")
        if args.command in TRAINING_COMMANDS and not (args.out or args.config):
            raise CLIError(f"{args.command} needs --out DIR (or --config YAML with out_dir)")
        return COMMANDS[args.command](args)
    except (ValueError, OSError) as exc:
        logger.debug("traceback", exc_info=True)
        sys.stderr.write(f"tlsearch: error: {one_line(exc)}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("tlsearch: interrupted\n")
        return 130


def one_line(exc: BaseException) -> str:
    """A single-line message for ``exc`` (pydantic errors: ``field: problem; ...``)."""
    if isinstance(exc, pydantic.ValidationError):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "config"
            parts.append(f"{loc}: {err['msg']}")
        return "invalid config: " + "; ".join(parts)
    return " ".join(str(exc).split()) or type(exc).__name__


def _print_json(data: dict[str, Any]) -> None:
    from tlsearch.training.metrics import json_safe

    sys.stdout.write(json.dumps(json_safe(data), indent=2) + "\n")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.3g}"


if __name__ == "__main__":
    sys.exit(main())
