"""``tlsearch analyze``, ``tlsearch best-pair`` and ``tlsearch compare-paper``: parsers and handlers
on top of :mod:`tlsearch.api`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import tlsearch.api as api  # the functions are looked up at call time: tests replace them there
from tlsearch.logutil import add_verbosity_flags

RESULTS_HELP = (
    "a search folder <storage>/<name> or a storage root holding several (local, s3://, gs://)"
)


def add_parsers(sub: Any) -> None:
    """Register the three analysis subcommands on the main parser's subparsers."""
    p = sub.add_parser(
        "analyze",
        help="the paper's figures and tables from a search's Parquet results",
        description="Read every seed-run under RESULTS and write into --out: summary.csv (one "
        "line per configuration: mean and 95%% t-interval over seeds of test/val R2, MAE, RMSE, "
        "with ok/failed/diverged counts), figures/*.png|svg (triangle heatmaps as Fig. 4 and "
        "6a/b, percentage change vs scratch as Fig. 5, MPT vs pair-wise vs scratch as Fig. 6c), "
        "tables/*.csv|md (incl. Table 1 style tables for targets that are no PT source) and "
        "report.md / report.html linking them with the search spec and software versions. "
        "Only the figures the data supports are drawn.",
    )
    p.add_argument("results", metavar="RESULTS", help=RESULTS_HELP)
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="report folder")
    p.add_argument("--search", metavar="NAME", help="only this search under RESULTS")
    add_verbosity_flags(p)
    p.set_defaults(handler=cmd_analyze)

    p = sub.add_parser(
        "best-pair",
        help="the best PT source / strategy / sampling / lr for a target, with evidence",
        description="Rank every transfer configuration of --target at one FT size by the mean "
        "over seeds of --metric (a validation metric: the test set is reported, never used to "
        "choose), compare each with its scratch baseline (percentage change, paired t-test over "
        "seeds, negative-transfer flag), and export the winner's fine-tuned checkpoints (one per "
        "seed) as an ensemble for 'tlsearch predict --model DIR'. With --search SPEC the search "
        "is run (or resumed) first, plus what the ranking still lacks: missing seeds of the "
        "leading configurations and missing scratch baselines.",
    )
    p.add_argument("--target", required=True, metavar="NAME", help="FT target (dataset name)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", metavar="RESULTS", help=RESULTS_HELP)
    source.add_argument(
        "--search",
        type=Path,
        metavar="SPEC.yaml",
        help="run this search (and fill-ins) first, then answer",
    )
    p.add_argument("--storage", metavar="URI", help="with --search: override its storage")
    p.add_argument("--address", metavar="ADDR", help="with --search: Ray cluster to join")
    p.add_argument(
        "--ft-size",
        default="auto",
        metavar="N|all|auto",
        help="FT size to compare at (default: the largest with results)",
    )
    p.add_argument(
        "--metric",
        default="val_mae",
        metavar="M",
        help="selection metric, val_mae (default), val_rmse or val_r2",
    )
    p.add_argument("--top", type=int, default=10, metavar="K", help="configurations shown (10)")
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where ranking, justification and checkpoints go (default: ./best_pair/<target>)",
    )
    p.add_argument("--no-export", action="store_true", help="do not copy checkpoints")
    add_verbosity_flags(p)
    p.set_defaults(handler=cmd_best_pair)

    p = sub.add_parser(
        "compare-paper",
        help="our results next to the paper's own numbers",
        description="Join our configurations (mean ± 95%% t-interval over seeds) with the "
        "paper's per-run metrics (anchors/paper_metrics.csv: experiment, pt, pt_size, ft, "
        "ft_size, strategy, trial, r2, mae) on PT, PT size, FT, FT size and strategy, and print "
        "ours vs theirs with both intervals, the difference and whether the intervals overlap.",
    )
    p.add_argument("results", metavar="RESULTS", help=RESULTS_HELP)
    p.add_argument(
        "--anchors",
        type=Path,
        metavar="CSV",
        help="the paper's metrics (default ../shared/data/paper/anchors/paper_metrics.csv)",
    )
    p.add_argument(
        "--rename",
        action="append",
        default=[],
        metavar="OURS=PAPER",
        help="map one of our dataset names to the paper's code (repeatable)",
    )
    p.add_argument(
        "--experiment",
        action="append",
        default=[],
        metavar="NAME",
        help="only these paper experiments (scratch, pairwise_pt941, pairwise_large_pt, "
        "ft_strategy, mpt; repeatable); default: every experiment a configuration matches",
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="also write comparison.csv/.md here")
    p.add_argument(
        "--weights",
        choices=("best", "last"),
        default="best",
        help="our test metrics from the weights each run kept (best: the headline, default) or "
        "from its final epoch's (last: what the paper's test predictions came from)",
    )
    add_verbosity_flags(p)
    p.set_defaults(handler=cmd_compare)


def cmd_analyze(args: argparse.Namespace) -> int:
    """``tlsearch analyze`` (``tlsearch.analyze``)."""
    path = api.analyze(api.load_runs(args.results, args.search), args.out)
    sys.stdout.write(f"report: {path}\nmarkdown: {path.with_suffix('.md')}\n")
    return 0


def _ft_size(text: str) -> int | None | str:
    if text in ("auto", "all"):
        return "auto" if text == "auto" else None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"--ft-size must be an integer, 'all' or 'auto', got {text!r}") from None


def cmd_best_pair(args: argparse.Namespace) -> int:
    """``tlsearch best-pair`` (``tlsearch.best_pair``)."""
    answer = api.best_pair(
        args.target,
        results=args.results,
        search=args.search,
        out=args.out,
        ft_size=_ft_size(args.ft_size),
        metric=args.metric,
        top=args.top,
        export=not args.no_export,
        storage=args.storage,
        address=args.address,
    )
    table = answer.justification.to_markdown(index=False)
    sys.stdout.write(answer.answer() + "\n\n" + table + "\n")
    sys.stdout.write(f"\nranking: {answer.out / 'ranking.csv'}\n")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``tlsearch compare-paper`` (``tlsearch.compare_paper``)."""
    rename = {}
    for item in args.rename:
        ours, sep, paper = item.partition("=")
        if not sep or not ours or not paper:
            raise ValueError(f"--rename {item!r}: expected OURS=PAPER")
        rename[ours] = paper
    comparison = api.compare_paper(
        args.results,
        anchors=args.anchors,
        rename=rename,
        experiments=args.experiment,
        out=args.out,
        weights=args.weights,
    )
    sys.stdout.write(comparison.markdown() + "\n")
    if len(comparison.unmatched):
        sys.stdout.write(
            f"\n{len(comparison.unmatched)} of our configuration(s) have no paper counterpart"
            " (e.g. other sizes or strategies)\n"
        )
    return 0
