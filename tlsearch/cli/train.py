"""``tlsearch train``, ``predict`` and ``demo``, and the run options the transfer commands share
(:func:`add_train_args`, :func:`add_runtime`, :func:`add_common`, :func:`train_overrides`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import tlsearch.api as api  # the functions are looked up at call time: tests replace them there
from tlsearch.cli.common import CLIError, print_json
from tlsearch.logutil import log_to_file
from tlsearch.plots import parity_plot

DATA_SPEC_HELP = (
    "a jarvis dataset-array .json/.json.gz file, a folder of CIF/POSCAR files with id_prop.csv, "
    "matminer:CODE, or generated:N[:SEED]"
)
DEMO_MAX_ATOMS = 12  # small cells keep the demo's line graphs (and its run time) small


# --- options ---------------------------------------------------------------------------------


def add_common(p: argparse.ArgumentParser) -> None:
    """``-v``, ``-q`` and ``--no-progress`` of a run command."""
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


def add_runtime(p: argparse.ArgumentParser) -> None:
    """``--device``, ``--threads``, ``--kernel``, ``--cache-dir`` and ``--no-cache``."""
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


def add_train_args(p: argparse.ArgumentParser) -> None:
    """Data, outputs, the training recipe and the model size (read by :func:`train_overrides`)."""
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
    arg(
        "--allow-pickle",
        action="store_true",
        default=None,
        help="read --data/--test given as a pickled table (.pkl): reading a pickle runs any "
        "code it holds, so only for files you trust (refused without this flag)",
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


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Nested RunConfig overrides from the flags that were given."""
    top = {
        "data": args.data,
        "test": args.test,
        "out_dir": args.out,
        "target": args.target,
        "data_home": args.data_home,
        "allow_test_overlap": args.allow_test_overlap,
        "allow_pickle": args.allow_pickle,
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


def require_data_and_out(args: argparse.Namespace) -> None:
    """A training command needs --data and --out, from the flags or its --config."""
    if not (args.data or args.config):
        raise CLIError(f"{args.command} needs --data SPEC (or --config YAML with data)")
    if not (args.out or args.config):
        raise CLIError(f"{args.command} needs --out DIR (or --config YAML with out_dir)")


def run_summary(metrics: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """The short summary printed after ``train``, ``pretrain``, ``finetune``, ``mpt`` and
    ``demo``."""
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


# --- parsers ---------------------------------------------------------------------------------


def add_parsers(sub: Any) -> None:
    """Register ``train``, ``predict`` and ``demo`` on the main parser's subparsers."""
    train = sub.add_parser(
        "train",
        help="train one model (scratch) and evaluate it",
        description="Train an ALIGNN model on --data (split 90:10 into train/validation with "
        "--seed), keep the weights of the best validation MAE, evaluate on --test, and write "
        "model.pt, metrics.json, predictions_val.csv, predictions_test.csv, history.csv, "
        "rejected.csv, train.log and the resolved config.yaml into --out.",
    )
    add_train_args(train)
    add_runtime(train)
    add_common(train)
    train.set_defaults(handler=cmd_train)

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
        "--allow-pickle",
        action="store_true",
        help="read --data given as a pickled table (.pkl): reading a pickle runs any code it "
        "holds, so only for files you trust (refused without this flag)",
    )
    predict.add_argument(
        "--data-home", type=Path, metavar="DIR", help="where named datasets are looked up"
    )
    add_runtime(predict)
    add_common(predict)
    predict.set_defaults(handler=cmd_predict)

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
    add_runtime(demo)
    add_common(demo)
    demo.set_defaults(handler=cmd_demo)


# --- handlers --------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    """``tlsearch train`` (``tlsearch.train``)."""
    require_data_and_out(args)
    run = api.train(
        config=args.config, overrides=train_overrides(args), progress=not args.no_progress
    )
    print_json(run_summary(run.metrics, run.out))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """``tlsearch predict``."""
    # torch and the model code (seconds to import): loaded by the command, not by --help.
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
        allow_pickle=args.allow_pickle,
    )
    summary.pop("rejected", None)
    print_json(summary)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``tlsearch demo``: generated data -> small model -> metrics and parity.png."""
    # torch and the pydantic config models (~0.1 s each to build): imported when the demo runs,
    # so that ``tlsearch --help`` stays fast.
    from tlsearch.model.config import ALIGNNConfig
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
    print_json(summary)
    return 0
