"""Rows from metrics, the trial's reported metric, the PT cache and the job adapter (no Ray)."""

from __future__ import annotations

import json
import math
import multiprocessing
import time
from pathlib import Path

import pytest

from tlsearch.jobs.config import DataRef, JobConfig
from tlsearch.jobs.identity import pretrain_key
from tlsearch.jobs.run import run_job, split_test
from tlsearch.search.run.job_fn import resolve_job_fn, run_search_job
from tlsearch.search.run.pretrain_cache import COMPLETE, ensure_pretrained
from tlsearch.search.run.rows import metric_columns, outcome_columns, trial_report


def test_metric_columns_normalised_physical_and_dotted():
    scaled = {"test": {"mae": 2.0, "r2": 0.5, "rmse": 3.0,
                       "normalised": {"mae": 0.2, "r2": 0.5, "rmse": 0.3}},
              "val": {"mae": 1.0, "r2": 0.6, "rmse": 1.5,
                      "normalised": {"mae": 0.1, "r2": 0.6, "rmse": 0.15}}}  # fmt: skip
    cols = metric_columns(scaled)
    assert (cols["test_mae"], cols["test_mae_phys"], cols["val_rmse"]) == (0.2, 2.0, 0.15)
    plain = metric_columns({"test.mae": 0.3, "test.r2": 0.9, "val.mae": 0.25})
    assert plain["test_mae"] == 0.3 and plain["val_mae"] == 0.25 and "test_mae_phys" not in plain


def test_outcome_detects_divergence():
    assert outcome_columns({"diverged": True, "val": {"mae": 0.1}})["status"] == "diverged"
    assert outcome_columns({"val": {"mae": math.nan}})["status"] == "diverged"
    ok = outcome_columns({"val": {"mae": 0.1}, "epochs_run": 4, "train_structures_per_second": 9})
    assert (ok["status"], ok["epochs_run"], ok["structures_per_second"]) == ("ok", 4, 9.0)


def test_trial_report_mean_and_penalty():
    rows = [{"status": "ok", "val_mae": 0.1, "config_hash": "h"},
            {"status": "ok", "val_mae": 0.3, "config_hash": "h"}]  # fmt: skip
    assert trial_report(rows, "val_mae", "min")["val_mae"] == pytest.approx(0.2)
    bad = [*rows, {"status": "diverged", "val_mae": None}]
    report = trial_report(bad, "val_mae", "min")
    assert report["val_mae"] == 1e6 and report["n_diverged"] == 1 and report["seeds_done"] == 3
    assert trial_report(bad, "val_r2", "max")["val_r2"] == -1e6


# --- the PT cache ----------------------------------------------------------------------------


def pt_job(data: str = "generated:30:1", **over) -> JobConfig:
    return JobConfig(kind="pretrain", seed=0, data=DataRef(name="A", data=data), **over)


def counting_job(job, workdir):
    """Slow PT job that logs each execution (for the concurrency test)."""
    log = Path(job.data.data_home)
    with open(log / "runs.log", "a") as fh:
        fh.write(f"{time.time()}\n")
    time.sleep(1.0)
    (Path(workdir) / "model.pt").write_bytes(b"weights")
    return {"val": {"mae": 0.1}, "checkpoint": str(Path(workdir) / "model.pt")}


def _ensure(args):
    job_json, storage = args
    return ensure_pretrained(JobConfig.model_validate_json(job_json), storage, counting_job).key


def test_concurrent_trials_run_a_pt_job_once(tmp_path):
    job = pt_job(data="generated:30:1").model_copy(
        update={"data": DataRef(name="A", data="generated:30:1", data_home=str(tmp_path))}
    )
    storage = str(tmp_path / "store")
    with multiprocessing.get_context("fork").Pool(3) as pool:
        keys = pool.map(_ensure, [(job.model_dump_json(), storage)] * 3)
    assert len(set(keys)) == 1
    assert len((tmp_path / "runs.log").read_text().splitlines()) == 1
    folder = tmp_path / "store" / "pretrained" / keys[0]
    assert (folder / "model.pt").read_bytes() == b"weights"
    assert json.loads((folder / COMPLETE).read_text()) == {"val": {"mae": 0.1}}
    again = ensure_pretrained(job, storage, counting_job)
    assert again.cache_hit and again.checkpoint == str(folder / "model.pt")


def test_failed_pt_job_leaves_nothing(tmp_path):
    def broken(job, workdir):
        (Path(workdir) / "model.pt").write_bytes(b"half")
        raise ValueError("bad structure")

    with pytest.raises(ValueError, match="bad structure"):
        ensure_pretrained(pt_job(), str(tmp_path), broken)
    assert [p.name for p in (tmp_path / "pretrained").iterdir()] == [
        f"{pretrain_key(pt_job())}.lock"
    ]


def test_pretrain_key_is_content_addressed(tmp_path):
    base = pt_job()
    assert pretrain_key(base) == pretrain_key(
        base.model_copy(update={"cpus_per_worker": 4, "cache_dir": "/x", "label": "other"})
    )
    ddp = {n: pretrain_key(base.model_copy(update={"num_workers": n})) for n in (1, 2, 4)}
    assert ddp[1] == pretrain_key(base) and len(set(ddp.values())) == 3  # per-rank BatchNorm
    assert pretrain_key(base) != pretrain_key(base.model_copy(update={"seed": 1}))
    data = tmp_path / "pt.json"
    data.write_text("[1]")
    first = pretrain_key(pt_job(data=str(data)))
    time.sleep(0.01)
    data.write_text("[2]")
    assert pretrain_key(pt_job(data=str(data))) != first


# --- the job adapter -------------------------------------------------------------------------


def test_split_test_holds_out_a_fixed_part(tmp_path):
    ref = DataRef(name="A", data="generated:40:3", test_fraction=0.25, split_seed=1)
    pool, test = split_test(ref, tmp_path / "one")
    pool2, test2 = split_test(ref, tmp_path / "two")
    ids = [{r["jid"] for r in json.loads(Path(p).read_text())} for p in (pool, test, test2)]
    assert len(ids[1]) == 10 and not ids[0] & ids[1] and ids[1] == ids[2]


def test_a_ddp_job_is_refused_outside_ray_train(tmp_path):
    job = pt_job(num_workers=2)
    with pytest.raises(NotImplementedError, match="Ray Train"):
        run_job(job, tmp_path)


def test_resolve_job_fn():
    assert resolve_job_fn(None) is run_search_job
    assert resolve_job_fn("tests.search.fakes:fake_job").__name__ == "fake_job"
    with pytest.raises(ValueError, match="package.module:function"):
        resolve_job_fn("tests.search.fakes")


def test_a_job_saves_checkpoints_and_removes_them_when_it_ends(tmp_path, monkeypatch):
    from tlsearch.jobs.checkpoints import StorageCheckpoints

    saved: list[int] = []
    real = StorageCheckpoints.save

    def save(self, state):
        saved.append(state["epoch"])
        real(self, state)

    monkeypatch.setattr(StorageCheckpoints, "save", save)
    tiny = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 8}
    resume = tmp_path / "resume" / "r1"
    job = JobConfig(kind="scratch", seed=0, data=DataRef(name="A", data="generated:30:3"),
                    train={"epochs": 3, "device": "cpu", "num_threads": 1}, model=tiny,
                    checkpoint_every=1, resume_uri=str(resume))  # fmt: skip
    metrics = run_job(job, tmp_path / "w")
    assert saved == [1, 2] and metrics["resumed_from_epoch"] is None
    assert not resume.exists()  # finished: removed
    resume.mkdir(parents=True)
    (resume / "resume.pt").write_bytes(b"left by an earlier attempt")
    bad = job.model_copy(update={"data": DataRef(name="A", data=str(tmp_path / "missing.json"))})
    with pytest.raises(FileNotFoundError):
        run_job(bad, tmp_path / "w2")
    assert not resume.exists()  # a deterministic failure is never retried: removed too


def test_a_damaged_cached_pt_model_is_trained_again_once_and_named(tmp_path, caplog):
    job = pt_job().model_copy(
        update={"data": DataRef(name="A", data="generated:30:1", data_home=str(tmp_path))}
    )
    storage = str(tmp_path / "store")
    first = ensure_pretrained(job, storage, counting_job)
    model = Path(first.checkpoint)
    model.write_bytes(b"weig")  # truncated
    with caplog.at_level("WARNING"):
        again = ensure_pretrained(job, storage, counting_job)
    assert not again.cache_hit and model.read_bytes() == b"weights"
    assert str(model) in caplog.text
    assert ensure_pretrained(job, storage, counting_job).cache_hit  # repaired: used from now on
    assert len((tmp_path / "runs.log").read_text().splitlines()) == 2


def test_a_bad_checkpoint_source_is_one_clear_deterministic_error(tmp_path):
    from tlsearch.jobs.errors import DETERMINISTIC_ERRORS

    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a model")
    job = JobConfig(
        kind="finetune",
        seed=0,
        data=DataRef(name="A", data="generated:12:1", test_fraction=0.25),
        pretrained=str(bad),
        strategy="unfreeze_all",
        train={"epochs": 1, "batch_size": 4},
    )
    with pytest.raises(DETERMINISTIC_ERRORS) as info:
        run_job(job, tmp_path / "work")
    text = str(info.value)
    assert str(bad) in text and "not a readable model file" in text
    assert "weights_only" not in text


def test_folders_of_killed_pt_jobs_are_removed_unless_held(tmp_path):
    from tlsearch.search.run.pretrain_cache import remove_abandoned
    from tlsearch.storage.claims import exclusive

    root = tmp_path / "pretrained"
    dead, live = root / "_tmp-aaaa-1234abcd", root / "_tmp-bbbb-5678abcd"
    for folder in (dead, live, root / "cccc"):
        folder.mkdir(parents=True)
        (folder / "model.pt").write_bytes(b"half")
    with exclusive(str(root / "bbbb")):  # a PT job of key bbbb is training
        assert remove_abandoned(str(tmp_path)) == [str(dead)]
    assert not dead.exists() and live.exists() and (root / "cccc" / "model.pt").exists()
