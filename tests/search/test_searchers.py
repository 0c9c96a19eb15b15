"""Optuna learns from full means only, runs as many trials at once as the cluster has slots,
and an Optuna search interrupted mid-way resumes to its whole budget."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest

from tests.search.conftest import executions, fake_spec
from tlsearch.search.run.driver import SearchInterruptedError, run_search
from tlsearch.search.run.searchers import FullMeansOptunaSearch, optuna_concurrency


def _study_states(searcher: FullMeansOptunaSearch) -> list[str]:
    return [trial.state.name for trial in searcher._ot_study.trials]


def test_a_configuration_asha_stopped_is_pruned_not_complete():
    from ray import tune

    searcher = FullMeansOptunaSearch(
        space={"lr": tune.loguniform(1e-4, 1e-2)}, metric="val_mae", mode="min", seed=0, n_seeds=5
    )
    for name in "ab":
        assert searcher.suggest(name) is not None
    searcher.on_trial_complete("a", {"val_mae": 0.1, "seeds_done": 2})  # ASHA stopped it
    searcher.on_trial_complete("b", {"val_mae": 0.2, "seeds_done": 5})
    assert _study_states(searcher) == ["PRUNED", "COMPLETE"]
    complete = [t for t in searcher._ot_study.trials if t.state.name == "COMPLETE"]
    assert [t.value for t in complete] == [0.2]  # the partial mean 0.1 taught it nothing


def test_optuna_runs_as_many_trials_at_once_as_the_cluster_has_slots(tmp_path, local_ray):
    spec = fake_spec(tmp_path, resources={"cpu": 1})  # the session's Ray has 2 CPUs
    assert optuna_concurrency(spec) == 2
    assert optuna_concurrency(spec.model_copy(update={"max_concurrent": 5})) == 5
    half = fake_spec(tmp_path, resources={"cpu": 0.5})
    assert optuna_concurrency(half) == 4


def test_an_interrupted_optuna_search_resumes_to_its_whole_budget(tmp_path, local_ray):
    spec = fake_spec(
        tmp_path,
        datasets={"A": "ok", "B": "ok"},
        scratch=False,
        seeds=[0, 1],
        strategies=["unfreeze_all", "last_layer"],
        lr={"loguniform": [1e-4, 1e-2]},
        search={"algorithm": "optuna", "num_samples": 6, "optuna_axes": ["strategy", "lr"]},
    )
    spec = spec.model_copy(
        update={
            "datasets": {
                name: ds.model_copy(update={"data": ds.data + "&sleep=0.4"})
                for name, ds in spec.datasets.items()
            }
        }
    )

    def interrupt_after(n: int) -> None:
        deadline = time.time() + 120
        while len(executions(tmp_path)) < n and time.time() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: Tune stops its trials and returns

    killer = threading.Thread(target=interrupt_after, args=(5,), daemon=True)
    killer.start()
    with pytest.raises((SearchInterruptedError, KeyboardInterrupt)):
        run_search(spec, verbose=0)
    killer.join()
    assert 0 < len(executions(tmp_path)) < 1 + 6 * 2  # interrupted mid-way

    status = run_search(spec, resume=True, verbose=0)
    assert status.planned == 12 and status.completed == 12 and status.failed == 0
    runs = [line for line in executions(tmp_path) if '"finetune"' in line]
    repeated = {line for line, count in Counter(runs).items() if count > 1}
    # a seed-run recorded before the interruption is never trained again (at most the ones
    # running at the interrupt are)
    assert len(repeated) <= 2


def test_search_help_says_optuna_runs_as_many_trials_as_the_cluster_has_slots(capsys):
    from tlsearch.cli.main import main as tlsearch_cli

    with pytest.raises(SystemExit):
        tlsearch_cli(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--max-concurrent" in text
    assert "the cluster's trial slots for Optuna experiments" in text
