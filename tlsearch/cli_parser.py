"""The ``tlsearch`` command line's argument parser: every command's options.

:mod:`tlsearch.cli` runs the commands; the transfer, search and analysis layers add their own
subcommands here through their ``add_*parser(s)`` functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DATA_SPEC_HELP = (
    "a jarvis dataset-array .json/.json.gz file, a folder of CIF/POSCAR files with id_prop.csv, "
    "matminer:CODE, or generated:N[:SEED]"
)


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
        "--kernel",
        choices=["auto", "reference", "fused"],
        help="how the model's layers compute (default auto: the fused CPU kernels on a CPU, "
        "the reference equations elsewhere)",
    )
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
