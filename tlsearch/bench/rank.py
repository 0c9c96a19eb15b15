"""``tlsearch bench rank-sources RESULTS``: does ``rank-sources`` predict what fine-tuning found?

For every group of fine-tuned rows of a finished search that share a target, FT size,
strategy and sampling and cover 2 or more PT sources, each source's PT model (its row's
``checkpoint_uri``) is scored on seed 0's FT training pool (the same data, test part held out
as the search held it out), and the estimates are compared with the fine-tuned test MAE
(physical units, mean over seeds): Spearman's rank correlation (positive = the estimate
orders sources as fine-tuning does), whether the truly best source is among the estimate's
top 2, and the cost of ranking next to the cost of the fine-tuning it would replace
(``wall_seconds`` of the group's rows). Writes ``<RESULTS>/bench_rank_sources.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

GROUP = ("ft_target", "ft_size", "strategy", "sampling")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tlsearch bench rank-sources", description=__doc__)
    parser.add_argument("results", type=Path, help="a search's results folder (<storage>/<name>)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="graph and frozen-trunk cache (default: the one the search's seed-runs used)",
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    report = bench_rank_sources(args.results, args.cache_dir, args.device)
    from tlsearch.training.metrics import json_safe

    text = json.dumps(json_safe(report), indent=2)
    (args.results / "bench_rank_sources.json").write_text(text + "\n", encoding="utf-8")
    for group in report["groups"]:
        logger.info(
            "%s: %d sources, spearman probe %.2f / logme %.2f, best in top 2: probe %s / logme %s"
            ", ranking %.1f s vs fine-tuning %.1f s (%.0fx cheaper)",
            group["group"], len(group["sources"]), group["spearman_probe"],
            group["spearman_logme"], group["top2_probe"], group["top2_logme"],
            group["rank_seconds"], group["ft_seconds"], group["ft_seconds"] / group["rank_seconds"],
        )  # fmt: skip
    logger.info("summary: %s", json.dumps(report["summary"]))
    return 0


def bench_rank_sources(
    results: Path, cache_dir: Path | None = None, device: str = "cpu"
) -> dict[str, Any]:
    """The comparison for every group of ``results`` (see the module docstring)."""
    from tlsearch.results.paths import locate
    from tlsearch.results.store import RunStore

    rows = RunStore(results / "runs").rows()
    checkpoints = {
        r["run_id"]: locate(r["checkpoint_uri"], str(results))
        for r in rows
        if r["kind"] in ("pretrain", "mpt")
    }
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["kind"] == "finetune" and row["status"] == "ok" and row.get("pt_run_id"):
            groups[tuple(row[k] for k in GROUP)].append(row)
    out = []
    for key, members in sorted(groups.items(), key=lambda item: str(item[0])):
        by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in members:
            by_source[row["pt_source"]].append(row)
        if len(by_source) >= 2:
            out.append(_group(key, by_source, checkpoints, cache_dir, device))
    return {"results": str(results), "groups": out, "summary": _summary(out)}


def _group(
    key: tuple, by_source: dict[str, list[dict]], checkpoints: dict[str, str],
    cache_dir: Path | None, device: str,
) -> dict[str, Any]:  # fmt: skip
    from tlsearch.search.run.prefilter import score_with_trunk
    from tlsearch.transfer.rank_sources import spearman

    sources = []
    for source, rows in sorted(by_source.items()):
        first = min(rows, key=lambda r: r["seed"])
        job = _job(first, cache_dir, device)
        score = score_with_trunk(source, checkpoints[first["pt_run_id"]], job)
        maes = [r["test_mae_phys"] if r["test_mae_phys"] is not None else r["test_mae"]
                for r in rows]  # fmt: skip
        sources.append({
            "source": source, "ft_test_mae": float(np.mean(maes)), "seeds": len(rows),
            "ft_seconds": float(sum(r["wall_seconds"] or 0.0 for r in rows)),
            **score,
        })  # fmt: skip
    ft = [s["ft_test_mae"] for s in sources]
    best = min(sources, key=lambda s: s["ft_test_mae"])["source"]
    by_probe = [s["source"] for s in sorted(sources, key=lambda s: s["probe_mae"])]
    by_logme = [s["source"] for s in sorted(sources, key=lambda s: -s["logme"])]
    return {
        "group": dict(zip(GROUP, key, strict=True)),
        "sources": sources,
        "best_source": best,
        "spearman_probe": spearman([s["probe_mae"] for s in sources], ft),
        "spearman_logme": spearman([-s["logme"] for s in sources], ft),
        "top2_probe": best in by_probe[:2],
        "top2_logme": best in by_logme[:2],
        "rank_seconds": float(sum(s["seconds"] for s in sources)),
        "ft_seconds": float(sum(s["ft_seconds"] for s in sources)),
    }


def _job(row: dict[str, Any], cache_dir: Path | None, device: str) -> Any:
    """The seed-run's own job (its data, sample, graph settings and cache), on ``device`` and,
    when given, with ``cache_dir`` as its cache."""
    from tlsearch.jobs.config import JobConfig

    job = JobConfig.model_validate_json(row["config_json"])
    update: dict[str, Any] = {"train": {**job.train, "device": device}}
    if cache_dir is not None:
        update["cache_dir"] = str(cache_dir)
    return job.model_copy(update=update)


def _summary(groups: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str) -> float:
        values = [g[key] for g in groups if not math.isnan(g[key])]
        return float(np.mean(values)) if values else math.nan

    return {
        "groups": len(groups),
        "mean_spearman_probe": mean("spearman_probe"),
        "mean_spearman_logme": mean("spearman_logme"),
        "top2_probe": sum(g["top2_probe"] for g in groups),
        "top2_logme": sum(g["top2_logme"] for g in groups),
        "rank_seconds": float(sum(g["rank_seconds"] for g in groups)),
        "ft_seconds": float(sum(g["ft_seconds"] for g in groups)),
    }
