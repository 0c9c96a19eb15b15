"""``tlsearch pretrain``, ``finetune``, ``mpt pretrain`` and ``rank-sources``."""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path
from typing import Any

import tlsearch.api as api  # the functions are looked up at call time: tests replace them there
from tlsearch.cli.common import print_json
from tlsearch.cli.train import (
    add_common,
    add_runtime,
    add_train_args,
    require_data_and_out,
    run_summary,
    train_overrides,
)
from tlsearch.transfer.names import CLOSED_FORM_HEADS, SAMPLING_METHODS, STRATEGY_NAMES

logger = logging.getLogger(__name__)


def add_parsers(sub: Any) -> None:
    """Register ``pretrain``, ``finetune``, ``mpt pretrain`` and ``rank-sources`` on the main
    parser's ``sub``."""
    pre = sub.add_parser(
        "pretrain",
        help="pre-train a model on a source dataset (optionally a random subset)",
        description="Train on --data (optionally a seeded random subset of --size structures, as "
        "'BG(50K)'), like 'train', and save model.pt with its provenance (source, size, seed, "
        "config, scaler, graph settings) for 'finetune --pretrained'.",
    )
    add_train_args(pre)
    pre.add_argument("--size", type=int, metavar="N", help="pre-training subset size (all)")
    add_runtime(pre)
    add_common(pre)
    pre.set_defaults(handler=cmd_pretrain)

    ft = sub.add_parser(
        "finetune",
        help="fine-tune a pre-trained model on a target dataset",
        description="Load --pretrained (a run folder, a tlsearch model.pt, an MPT model or an "
        "alignn checkpoint), prepare it with --strategy, draw --size training structures from "
        "--data with --sampling, train with the paper's recipe and evaluate on --test. "
        "Without --pretrained and with --strategy scratch, the same path trains from scratch.",
    )
    add_train_args(ft)
    arg = ft.add_argument_group("transfer learning").add_argument
    arg("--pretrained", metavar="PATH", help="PT run folder, model.pt or alignn checkpoint")
    arg(
        "--foundation",
        metavar="NAME",
        help="instead of --pretrained, a pretrained foundation model: chgnet-0.3.0, "
        "sevenn-7net-0... (shipped with pip install '.[foundation]', offline) or FAMILY:PATH "
        "for a local checkpoint (alignn:FOLDER holding alignn's config.json and checkpoint_*.pt)",
    )
    arg(
        "--strategy",
        default="unfreeze_all",
        choices=(*STRATEGY_NAMES, *CLOSED_FORM_HEADS),
        help="FT strategy (paper Sec. 2.4; default unfreeze_all = strategy 1); krr / ridge: "
        "a closed-form kernel ridge / ridge head on the frozen trunk's features, tuned by "
        "5-fold CV on the FT sample (no training loop, seconds)",
    )
    arg(
        "--freeze-first",
        type=int,
        metavar="K",
        help="partial freezing: also freeze the backbone's first K trunk blocks (ALIGNN: the "
        "paper's layers 1..K), e.g. with --strategy unfreeze_all",
    )
    arg(
        "--features",
        default="last",
        choices=["last", "layers"],
        help="with --strategy krr/ridge: the last trunk layer's pooled features (default) or "
        "every layer's, concatenated",
    )
    arg("--size", type=int, metavar="N", help="FT training set size drawn from --data (all)")
    arg(
        "--sampling",
        default="random",
        choices=SAMPLING_METHODS,
        help="how the --size FT structures are drawn (paper Sec. 2.5; default random)",
    )
    arg(
        "--train-frozen-bn",
        action="store_true",
        help="let BatchNorm statistics of frozen layers update (the paper's code); default: "
        "frozen layers are fully frozen",
    )
    add_runtime(ft)
    add_common(ft)
    ft.set_defaults(handler=cmd_finetune)

    mpt = sub.add_parser(
        "mpt",
        help="multi-property pre-training (MPT)",
        description="Multi-property pre-training (paper Sec. 2.6); fine-tune the result with "
        "'tlsearch finetune --pretrained DIR'.",
    )
    mpt_sub = mpt.add_subparsers(
        dest="mpt_command", metavar="ACTION", required=True, help="pretrain: build and train"
    )
    mpre = mpt_sub.add_parser(
        "pretrain",
        conflict_handler="resolve",
        help="pre-train one trunk with a head per property",
        description="Merge several single-property datasets into one corpus (structures that "
        "are the same material are merged, each property keeping its own values), mask out "
        "--exclude-target and remove every structure of --exclude-data from it, then train one "
        "ALIGNN trunk with one head per property on the masked L1 loss (paper Eq. 1).",
    )
    add_train_args(mpre)
    arg = mpre.add_argument_group("multi-property corpus").add_argument
    arg(
        "--data",
        nargs="+",
        metavar="NAME=SPEC",
        help="datasets, each NAME=SPEC (e.g. GV=path.json.gz); a matminer code names itself "
        "(matminer:DC)",
    )
    arg("--exclude-target", metavar="NAME", help="the FT target property: all its values masked")
    arg(
        "--exclude-data",
        nargs="*",
        default=[],
        metavar="SPEC",
        help="the target's FT and test sets: every matching structure is removed from the corpus",
    )
    arg("--head-layers", type=int, default=1, metavar="K", help="MLP layers per head (1)")
    arg(
        "--loss-denominator",
        choices=["n_properties", "known"],
        help="divisor of Eq. 1 per structure: n_properties (default; the paper's Eq. 1 and "
        "code) or known (the structure's known-property count); train.mpt_loss_denominator",
    )
    add_runtime(mpre)
    add_common(mpre)
    mpre.set_defaults(handler=cmd_mpt)
    _add_rank_parser(sub)


def _add_rank_parser(sub: Any) -> None:
    rank = sub.add_parser(
        "rank-sources",
        help="rank PT models for a target in seconds, before fine-tuning any",
        description="For each --pretrained (and --foundation) model, pass the target's FT "
        "sample (the structures 'finetune --size N --sampling M --seed S' would train on) "
        "through its frozen trunk once and score the pooled features: probe_mae, the "
        "leave-one-out MAE of a ridge regression (target units, lower is better), and logme, "
        "LogME's evidence per structure (higher is better). These rank how linearly each "
        "frozen trunk carries the target, not a fine-tuned result; check them against your "
        "own fine-tuned runs before skipping sources. Features are cached where fine-tuning's "
        "frozen-trunk cache looks for them.",
    )
    arg = rank.add_argument
    arg("--data", required=True, metavar="SPEC", help="the target's training data")
    arg("--pretrained", nargs="+", default=[], metavar="PATH",
        help="PT run folders, model.pt files or alignn checkpoints")  # fmt: skip
    arg("--foundation", nargs="+", default=[], metavar="NAME",
        help="foundation models ranked beside them: chgnet-0.3.0, sevenn-7net-0, "
        "alignn:FOLDER... (see 'finetune --foundation')")  # fmt: skip
    arg("--target", help="the target property when the data has several")
    arg("--size", type=int, metavar="N", help="FT training set size drawn from --data (all)")
    arg("--sampling", default="random", choices=SAMPLING_METHODS, help="default random")
    arg("--seed", type=int, default=0, help="the FT seed whose sample is scored (0)")
    arg("--by", default="probe_mae", choices=["probe_mae", "logme"], help="rank by (probe_mae)")
    arg("--cache-dir", type=Path, default=Path(".tlsearch_cache"),
        help="graph and trunk-feature cache (.tlsearch_cache)")  # fmt: skip
    arg("--data-home", type=Path, help="where matminer/JARVIS files are kept")
    arg("--device", default="cpu", help="cpu or cuda (cpu)")
    arg("--out", type=Path, metavar="CSV", help="also write the ranking here")
    rank.set_defaults(handler=cmd_rank_sources)


def parse_named_specs(items: list[str]) -> dict[str, str]:
    """``NAME=SPEC`` (or ``matminer:CODE``) items into {name: spec}; errors name the item."""
    out: dict[str, str] = {}
    for item in items:
        if "=" in item:
            name, spec = item.split("=", 1)
        elif item.startswith("matminer:"):
            name, spec = item.split(":", 1)[1], item
        else:
            raise ValueError(f"--data {item!r}: give NAME=SPEC (or matminer:CODE)")
        if not name or not spec or name in out:
            raise ValueError(f"--data {item!r}: empty or repeated dataset name")
        out[name] = spec
    return out


def cmd_pretrain(args: argparse.Namespace) -> int:
    """``tlsearch pretrain``: :func:`tlsearch.pretrain` (it logs to train.log)."""
    require_data_and_out(args)
    run = api.pretrain(
        config=args.config,
        overrides=train_overrides(args),
        size=args.size,
        progress=not args.no_progress,
    )
    print_json(run_summary(run.metrics, run.out))
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    """``tlsearch finetune``: :func:`tlsearch.finetune`."""
    require_data_and_out(args)
    run = api.finetune(
        config=args.config,
        overrides=train_overrides(args),
        pretrained=args.pretrained,
        foundation=args.foundation,
        freeze_first=args.freeze_first,
        features=args.features,
        strategy=args.strategy,
        size=args.size,
        sampling=args.sampling,
        train_frozen_bn=args.train_frozen_bn,
        progress=not args.no_progress,
    )
    print_json(run_summary(run.metrics, run.out))
    return 0


def cmd_mpt(args: argparse.Namespace) -> int:
    """``tlsearch mpt pretrain``: :func:`tlsearch.mpt_pretrain`."""
    require_data_and_out(args)
    overrides = train_overrides(args)
    if not args.data:
        raise ValueError("mpt pretrain needs --data NAME=SPEC ...")
    datasets = parse_named_specs(args.data)
    run = api.mpt_pretrain(
        datasets,
        config=args.config,
        overrides=overrides,
        exclude_target=args.exclude_target,
        exclude_data=list(args.exclude_data),
        head_layers=args.head_layers,
        loss_denominator=args.loss_denominator,
        progress=not args.no_progress,
    )
    print_json(run_summary(run.metrics, run.out))
    return 0


def cmd_rank_sources(args: argparse.Namespace) -> int:
    """``tlsearch rank-sources``: :func:`tlsearch.transfer.rank_sources.rank_sources`, printed."""
    # torch and the model (seconds to import): loaded by the command, not by --help.
    from tlsearch.transfer.rank_sources import rank_sources

    scores = rank_sources(
        args.pretrained, args.data, by=args.by, foundation=args.foundation,
        target=args.target, size=args.size,
        sampling=args.sampling, seed=args.seed, cache_dir=args.cache_dir,
        data_home=args.data_home, device=args.device,
    )  # fmt: skip
    rows = [{"rank": i + 1, **s.as_row()} for i, s in enumerate(scores)]
    out = [
        f"PT sources for {args.data} ({rows[0]['n']} structures), best first by {args.by}; "
        f"predicting the mean: leave-one-out MAE {rows[0]['baseline_mae']:.4g}"
    ]
    for row in rows:
        cached = ", features cached" if row["features_cached"] else ""
        out.append(
            f"{row['rank']:>3}. {row['pretrained']}: probe_mae {row['probe_mae']:.4g}, "
            f"logme {row['logme']:.4g} ({row['seconds']:.1f} s{cached})"
        )
    sys.stdout.write("\n".join(out) + "\n")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        logger.info("ranking written to %s", args.out)
    return 0
