"""best_pair(search=...): the spec runs, then exactly the missing seeds and baselines
(fake jobs)."""

from __future__ import annotations

import os

import pytest
import yaml

import tlsearch
from tests.search.conftest import executions, fake_spec_data
from tlsearch.api.fill import run_then_rank


def _spec(tmp_path):
    data = fake_spec_data(
        tmp_path,
        name="bp",
        scratch=False,
        strategies=["unfreeze_all", "last_layer"],
        seeds=[0, 1, 2],
    )
    path = tmp_path / "bp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_best_pair_search_runs_the_spec_then_fills_what_is_missing(tmp_path, local_ray):
    spec = _spec(tmp_path)
    results, best = run_then_rank(str(spec), "A", base_dir=str(tmp_path), verbose=0)
    first = executions(tmp_path)
    # 1 PT job + 2 configurations x 3 seeds, then the missing scratch baseline (3 seeds) for
    # the leading configurations (same sampling and lr: one baseline).
    assert len([e for e in first if '"pretrain"' in e]) == 1
    assert len([e for e in first if '"finetune"' in e]) == 6
    assert len([e for e in first if '"scratch"' in e]) == 3
    assert best.winner is not None and best.winner["n_ok"] == 3
    assert best.winner["vs_scratch_n_pairs"] == 3
    dirs = sorted(os.path.basename(d) for d in results.search_dirs)
    assert dirs[0] == "bp" and dirs[1].startswith("bp-fill-")

    # a seed-run of the winner goes missing: only that one runs again, with the same run id
    win = best.winner
    lost = sorted(win["run_ids"])[1]
    os.remove(tmp_path / "store" / "bp" / "runs" / f"{lost}.parquet")
    results, best = run_then_rank(str(spec), "A", base_dir=str(tmp_path), verbose=0)
    again = executions(tmp_path)[len(first) :]
    assert len(again) == 1 and '"finetune"' in again[0]
    assert lost in set(results.runs["run_id"])
    assert best.winner["n_ok"] == 3 and best.winner["config"] == win["config"]


def test_unknown_target_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="not a target"):
        tlsearch.best_pair("Z", search=_spec(tmp_path), out=tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "store").exists()
