"""The ``tlsearch`` command: ``train``, ``predict``, ``demo`` and ``bench`` (the parser of every
command is built in :mod:`tlsearch.cli_parser`; the other commands' handlers live with their
layers: transfer, search, analysis).

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

from tlsearch.cli_parser import build_parser
from tlsearch.logutil import log_to_file, setup_logging

logger = logging.getLogger("tlsearch.cli")

EXIT_BAD_INPUT = 2
DEMO_MAX_ATOMS = 12  # small cells keep the demo's line graphs (and its run time) small


class CLIError(ValueError):
    """A usage problem found by the CLI itself (reported like any bad input)."""


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
        "kernel": args.kernel,
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
        kernel=args.kernel or "auto",
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
            alignn_layers=1,
            gcn_layers=1,
            hidden_features=32,
            embedding_features=32,
            kernel=args.kernel or "auto",
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
