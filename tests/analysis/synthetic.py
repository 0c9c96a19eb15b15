"""A small synthetic Parquet result set whose answers are known by construction.

Search ``pw`` (5 seeds planned), values ``base + 0.001 * seed``:

- target DC at FT 100 and 800, scratch (lr 1e-3, random): test MAE 0.030 (800) / 0.050 (100),
  R2 0.60 / 0.30;
- BG(941)->DC800 unfreeze_all: test MAE 0.020 (best on test), val MAE 0.026;
- FE(941)->DC800 unfreeze_all: test MAE 0.025, val MAE 0.016 (best on validation: the winner);
- BG(941)->DC800 last_layer: test MAE 0.040 (negative transfer);
- DC(941)->BG800 unfreeze_all with seed 4 diverged; FE(5000)->DC800 with seeds 0-2 only;
- MPT->DC800 new_head_unfreeze_all: test MAE 0.018, val 0.019;
- target D2 (not a PT source: out of distribution) with scratch, FE(941) and MPT;
- one PT job row per source.
"""

from __future__ import annotations

import json
from pathlib import Path

from tlsearch.results.store import RunStore

SEEDS = (0, 1, 2, 3, 4)


def _config(
    kind,
    target,
    size,
    source=None,
    pt_size=None,
    strategy=None,
    lr=1e-3,
    test_mae=0.03,
    val_mae=0.03,
    r2=0.6,
    seeds=SEEDS,
    diverged=(),
    sampling="random",
):
    return dict(
        kind=kind,
        target=target,
        size=size,
        source=source,
        pt_size=pt_size,
        strategy=strategy,
        lr=lr,
        test_mae=test_mae,
        val_mae=val_mae,
        r2=r2,
        seeds=seeds,
        diverged=diverged,
        sampling=sampling,
    )


CONFIGS = [
    _config("scratch", "DC", 800, test_mae=0.030, val_mae=0.031, r2=0.60),
    _config("scratch", "DC", 100, test_mae=0.050, val_mae=0.052, r2=0.30),
    _config("scratch", "BG", 800, test_mae=0.150, val_mae=0.150, r2=0.55),
    _config(
        "finetune", "DC", 800, "BG", 941, "unfreeze_all", test_mae=0.020, val_mae=0.026, r2=0.70
    ),
    _config(
        "finetune", "DC", 100, "BG", 941, "unfreeze_all", test_mae=0.040, val_mae=0.041, r2=0.40
    ),
    _config(
        "finetune", "DC", 800, "FE", 941, "unfreeze_all", test_mae=0.025, val_mae=0.016, r2=0.65
    ),
    _config("finetune", "DC", 800, "BG", 941, "last_layer", test_mae=0.040, val_mae=0.039, r2=0.50),
    _config(
        "finetune",
        "DC",
        800,
        "FE",
        5000,
        "unfreeze_all",
        test_mae=0.021,
        val_mae=0.015,
        r2=0.72,
        seeds=(0, 1, 2),
    ),
    _config(
        "finetune",
        "BG",
        800,
        "DC",
        941,
        "unfreeze_all",
        test_mae=0.140,
        val_mae=0.140,
        r2=0.58,
        diverged=(4,),
    ),
    _config(
        "mpt",
        "DC",
        800,
        "MPT",
        None,
        "new_head_unfreeze_all",
        test_mae=0.018,
        val_mae=0.019,
        r2=0.75,
    ),
    _config("scratch", "D2", None, test_mae=0.148, val_mae=0.150, r2=0.635),
    _config(
        "finetune", "D2", None, "FE", 941, "unfreeze_all", test_mae=0.127, val_mae=0.13, r2=0.67
    ),
    _config(
        "mpt",
        "D2",
        None,
        "MPT",
        None,
        "new_head_unfreeze_all",
        test_mae=0.125,
        val_mae=0.128,
        r2=0.671,
    ),
]


def config_hash(c: dict) -> str:
    key = f"{c['kind']}-{c['target']}-{c['size']}-{c['source']}-{c['pt_size']}-{c['strategy']}"
    return key.replace("None", "x").replace(".", "")


def write_results(storage: Path, with_checkpoints: bool = True, last_epoch: bool = False) -> Path:
    """Write the set under ``storage/pw``; returns the search folder. ``last_epoch``: the rows
    also have the final epoch's test metrics (MAE 0.005 above the headline, R2 0.05 below)."""
    store = RunStore.for_search(str(storage), "pw")
    for c in CONFIGS:
        h = config_hash(c)
        for seed in c["seeds"]:
            ckpt = storage / "pw" / "work" / f"{h}-s{seed}" / "model.pt"
            if with_checkpoints:
                ckpt.parent.mkdir(parents=True, exist_ok=True)
                ckpt.write_text(f"checkpoint {h} {seed}")
            diverged = seed in c["diverged"]
            row = {
                "run_id": f"{h}-s{seed}",
                "search_name": "pw",
                "trial_id": h,
                "config_hash": h,
                "seed": seed,
                "kind": c["kind"],
                "pt_source": c["source"],
                "pt_size": c["pt_size"],
                "ft_target": c["target"],
                "ft_size": c["size"],
                "strategy": None if c["kind"] == "scratch" else c["strategy"],
                "sampling": c["sampling"],
                "lr": c["lr"],
                "status": "diverged" if diverged else "ok",
                "error": "training diverged" if diverged else None,
                "test_mae": None if diverged else c["test_mae"] + 0.001 * seed,
                "val_mae": None if diverged else c["val_mae"] + 0.001 * seed,
                "test_r2": None if diverged else c["r2"] - 0.01 * seed,
                "val_r2": None if diverged else c["r2"],
                "checkpoint_uri": str(ckpt),
            }
            if last_epoch and not diverged:
                row["test_mae_last_epoch"] = row["test_mae"] + 0.005
                row["test_r2_last_epoch"] = row["test_r2"] - 0.05
            store.write(row)
    for source in ("BG", "FE", "DC"):
        store.write(
            {
                "run_id": f"pt-{source}",
                "kind": "pretrain",
                "pt_source": source,
                "pt_size": 941,
                "status": "ok",
                "seed": 0,
                "test_mae": 0.1,
            }
        )
    plan = {
        "search_name": "pw",
        "planned_seed_runs": 5 * len(CONFIGS),
        "planned_pretrain_jobs": 3,
        "seeds": list(SEEDS),
    }
    (storage / "pw" / "plan.json").write_text(json.dumps(plan))
    (storage / "pw" / "spec.yaml").write_text("name: pw\nseeds: [0, 1, 2, 3, 4]\n")
    return storage / "pw"
