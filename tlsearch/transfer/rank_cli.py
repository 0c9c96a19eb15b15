"""``tlsearch rank-sources``: PT models ranked for a target before any fine-tuning."""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path
from typing import Any

from tlsearch.transfer.sampling import SAMPLING_METHODS

logger = logging.getLogger(__name__)


def add_rank_parser(sub: Any) -> None:
    rank = sub.add_parser(
        "rank-sources",
        help="rank PT models for a target in seconds, before fine-tuning any",
        description="For each --pretrained model, pass the target's FT sample (the structures "
        "'finetune --size N --sampling M --seed S' would train on) through its frozen trunk once "
        "and score the pooled features: probe_mae, the leave-one-out MAE of a ridge regression "
        "(target units, lower is better), and logme, LogME's evidence per structure (higher is "
        "better). These rank how linearly each frozen trunk carries the target, not a "
        "fine-tuned result; check them against your own fine-tuned runs before skipping "
        "sources. Features are cached where fine-tuning's frozen-trunk cache looks for them.",
    )
    arg = rank.add_argument
    arg("--data", required=True, metavar="SPEC", help="the target's training data")
    arg("--pretrained", required=True, nargs="+", metavar="PATH",
        help="PT run folders, model.pt files or alignn checkpoints")  # fmt: skip
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


def cmd_rank_sources(args: argparse.Namespace) -> int:
    from tlsearch.transfer.rank_sources import rank_sources

    scores = rank_sources(
        args.pretrained, args.data, by=args.by, target=args.target, size=args.size,
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
