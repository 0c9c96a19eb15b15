"""``tlsearch pretrain``, ``tlsearch finetune`` and ``tlsearch mpt pretrain``."""

from __future__ import annotations

import argparse
from typing import Any

from tlsearch.transfer.names import STRATEGY_NAMES
from tlsearch.transfer.sampling import SAMPLING_METHODS


def add_parsers(sub: Any, add_train_args: Any, add_runtime: Any, add_common: Any) -> None:
    """Register the transfer-learning subcommands on the main parser's ``sub``."""
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
        "--strategy",
        default="unfreeze_all",
        choices=STRATEGY_NAMES,
        help="FT strategy (paper Sec. 2.4; default unfreeze_all = strategy 1)",
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


def cmd_pretrain(args: argparse.Namespace, overrides: dict[str, Any]) -> Any:
    """``tlsearch pretrain``: :func:`tlsearch.pretrain`; returns its Run."""
    from tlsearch.api import pretrain

    return pretrain(
        config=args.config, overrides=overrides, size=args.size, progress=not args.no_progress
    )


def cmd_finetune(args: argparse.Namespace, overrides: dict[str, Any]) -> Any:
    """``tlsearch finetune``: :func:`tlsearch.finetune`; returns its Run."""
    from tlsearch.api import finetune

    return finetune(
        config=args.config,
        overrides=overrides,
        pretrained=args.pretrained,
        strategy=args.strategy,
        size=args.size,
        sampling=args.sampling,
        train_frozen_bn=args.train_frozen_bn,
        progress=not args.no_progress,
    )


def cmd_mpt(args: argparse.Namespace, overrides: dict[str, Any]) -> Any:
    """``tlsearch mpt pretrain``: :func:`tlsearch.mpt_pretrain`; returns its Run."""
    from tlsearch.api import mpt_pretrain

    if not args.data:
        raise ValueError("mpt pretrain needs --data NAME=SPEC ...")
    datasets = parse_named_specs(args.data)
    return mpt_pretrain(
        datasets,
        config=args.config,
        overrides=overrides,
        exclude_target=args.exclude_target,
        exclude_data=list(args.exclude_data),
        head_layers=args.head_layers,
        loss_denominator=args.loss_denominator,
        progress=not args.no_progress,
    )
