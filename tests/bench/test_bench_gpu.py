"""``tlsearch bench gpu`` / ``scripts/gpu_check.sh``: on a node without a usable CUDA GPU one
line and exit 2 (nothing runs); on a GPU node every check gets a table row, a failing check
does not hide the others and makes the exit status 1."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tlsearch.bench import gpu
from tlsearch.cli.main import main as tlsearch_main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_ray_start(monkeypatch):
    from tlsearch.search.run import driver

    def refuse(address):
        raise AssertionError("the GPU check started Ray on a node it refuses")

    monkeypatch.setattr(driver, "connect", refuse)


def test_a_cpu_only_torch_is_refused_with_one_line(monkeypatch, capsys, no_ray_start):
    monkeypatch.setattr(torch.version, "cuda", None)
    assert tlsearch_main(["bench", "gpu"]) == gpu.NO_GPU_EXIT
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"tlsearch bench gpu: torch {torch.__version__} is a CPU-only build")
    assert "--index-url https://download.pytorch.org/whl/cu" in line


def test_a_cuda_torch_without_a_visible_gpu_is_refused(monkeypatch, capsys, no_ray_start):
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--only", "ddp"]) == gpu.NO_GPU_EXIT
    out = capsys.readouterr().out
    assert out.startswith("tlsearch bench gpu: no CUDA GPU visible (torch ")
    assert "CUDA 12.8" in out and out.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU node runs the check itself")
def test_the_script_exits_2_on_this_cpu_node():
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh")], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stdout.startswith("tlsearch bench gpu: ")
    assert "run the GPU check on a GPU node" in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU node runs the check itself")
def test_without_a_venv_the_script_runs_the_model_core_with_python3(tmp_path):
    """A lent GPU machine: no .venv, no $PYTHON, a python3 with torch on PATH: the script runs
    the GPU check with it and says what it lacks (here a CPU torch: one line, exit 2)."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "gpu_check.sh", repo / "scripts")
    (repo / "tlsearch").symlink_to(REPO / "tlsearch")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python3").chmod(0o755)
    script, env = str(repo / "scripts" / "gpu_check.sh"), {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    done = subprocess.run(["bash", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2, done.stderr
    assert "no venv here" in done.stderr and "ddp and packing need Ray" in done.stderr
    assert "no .gpu_deps/" in done.stderr
    assert done.stdout.startswith("tlsearch bench gpu: ")


def test_every_check_gets_a_row_and_a_failure_sets_the_exit_status():
    def ok(args):
        return gpu.CheckResult("train (tlsearch vs alignn)", "ok", "batch 16: 900 vs 400")

    def broken(args):
        raise RuntimeError("NCCL error: unhandled system error")

    def skipped(args):
        raise gpu.SkipCheck("alignn is not installed")

    functions = {"train": ok, "ddp": broken, "memory": skipped}
    results = gpu.run_checks(["train", "ddp", "memory"], argparse.Namespace(), functions)
    assert [(r.name, r.status) for r in results] == [
        ("train (tlsearch vs alignn)", "ok"), ("ddp", "FAILED"), ("memory", "skipped"),
    ]  # fmt: skip
    assert results[1].result == "RuntimeError: NCCL error: unhandled system error"
    assert gpu.exit_status(results) == 1 and gpu.exit_status([results[0], results[2]]) == 0
    table = gpu.format_table("GPU check on 1 x H200", results)
    lines = table.splitlines()
    assert lines[0] == "GPU check on 1 x H200" and len(lines) == 3 + len(results)
    assert "NCCL error" in table and "alignn is not installed" in table


def test_the_checks_the_issue_asks_for_are_wired():
    assert (
        set(gpu.CHECK_FUNCTIONS)
        == set(gpu.CHECKS)
        == {"parity", "train", "memory", "ddp", "packing", "precision"}
    )


def _args(**over) -> argparse.Namespace:
    args = gpu._parser().parse_args([])
    args.cpus, args.address = 16.0, None
    for key, value in over.items():
        setattr(args, key, value)
    return args


class _Props:
    name, total_memory = "NVIDIA H200", 140 * gpu.GIB


def test_each_check_reads_what_its_bench_returns(monkeypatch, tmp_path):
    """The GPU-side plumbing on this CPU node: the benches and CUDA's counters are stand-ins."""
    import tlsearch.bench.packing as packing
    import tlsearch.bench.train as train
    import tlsearch.jobs.run as jobs
    import tlsearch.search.run.ddp as ddp
    from tlsearch.search.run import driver, gpu_memory

    calls: dict[str, object] = {}

    def fake_bench_train(records, ns):
        result = {"tlsearch_structures_per_s": 900.0, "alignn_structures_per_s": 400.0,
                  "speedup": 2.25, "device": ns.device}  # fmt: skip
        calls[f"train{ns.batch_size}"] = result
        return result

    monkeypatch.setattr(train, "bench_train", fake_bench_train)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: _Props())
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for name in ("empty_cache", "reset_peak_memory_stats"):
        monkeypatch.setattr(torch.cuda, name, lambda: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 3 * gpu.GIB)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda: 4 * gpu.GIB)
    fractions: list = []
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                        lambda share, index: fractions.append(share))  # fmt: skip
    monkeypatch.setattr(gpu_memory, "cap_gpu_memory", lambda share: fractions.append(share))

    def fake_run_job(job, workdir):
        precision = job.train.get("precision")
        if precision is None:
            calls["memory"] = job
            return {"device": "cuda", "train_structures_per_second": 700.0}
        calls[precision] = job
        speed = {"fp32": 700.0, "tf32": 1400.0, "bf16": 2100.0}[precision]
        return {"device": "cuda", "train_structures_per_second": speed, "precision": precision,
                "test": {"mae": 0.02}}  # fmt: skip

    def fake_ddp(job, workdir):
        calls["ddp"] = job
        (workdir / "model.pt").write_bytes(b"m")
        return {"device": "cuda:0", "epochs_run": 2, "diverged": False, "val": {"mae": 0.12},
                "train_structures_per_second": 1500.0, "scaler": {}}  # fmt: skip

    monkeypatch.setattr(jobs, "run_job", fake_run_job)
    monkeypatch.setattr(ddp, "run_ddp_pretrain", fake_ddp)
    monkeypatch.setattr(gpu, "_nccl_available", lambda: True)
    monkeypatch.setitem(driver.LAST_PHASES, "cluster", {"CPU": 16.0, "GPU": 1.0})
    report = {"phases": {"alone": {"structures_per_second": 300.0, "peak_concurrent_runs": 1},
                         "packed": {"structures_per_second": 960.0, "peak_concurrent_runs": 4}},
              "ratio": 3.2, "goal_met": True}  # fmt: skip

    def fake_packing(setup, storage, address=None):
        calls["packing"] = setup
        return report

    monkeypatch.setattr(packing, "run_packing", fake_packing)
    _parity_on_cpu(monkeypatch)
    results = gpu.run_checks(gpu.CHECKS, _args())
    assert [r.status for r in results] == ["ok"] * 6, [r.result for r in results]
    parity, train_row, memory, ddp_row, packed, precision = results
    assert parity.result.startswith("train float32 on cpu: ")
    assert "tf32 1400 structures/s (2.00x), test MAE 0.02" in precision.result
    assert "bf16 2100 structures/s (3.00x)" in precision.result
    assert calls["bf16"].train["device"] == "cuda" and calls["fp32"].kind == "scratch"
    assert "batch 16: 900 vs 400 structures/s (2.25x)" in train_row.result
    assert calls["train16"]["device"] == calls["train64"]["device"] == "cuda"
    assert memory.result.startswith("peak 3.00 GiB allocated, 4.00 GiB reserved, of the 35.0")
    assert calls["memory"].train["batch_size"] == 16 and calls["memory"].data.size == 800
    assert fractions == [0.25, 1.0]  # capped for the run, the cap lifted afterwards
    assert ddp_row.name == "ddp (NCCL, 1 worker)" and "2 epochs on cuda:0" in ddp_row.result
    assert (calls["ddp"].num_workers, calls["ddp"].gpus_per_worker) == (1, 1)
    assert "3.20x (goal 3x: met)" in packed.result
    assert (calls["packing"].per_device, calls["packing"].runs) == (4, 4)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda: 40 * gpu.GIB)
    (over,) = gpu.run_checks(["memory"], _args())
    assert over.status == "FAILED"  # more than a gpu: 0.25 trial's share


def _parity_on_cpu(monkeypatch) -> None:
    """The parity check runs on this CPU where it would use CUDA."""
    from tlsearch.model import kernel_parity

    real = kernel_parity.kernel_parity
    monkeypatch.setattr(
        kernel_parity, "kernel_parity", lambda device, training: real("cpu", training)
    )


def test_the_parity_row_passes_when_fused_and_reference_agree_and_fails_when_not(monkeypatch):
    """Run here on the CPU in place of CUDA; a fused kernel that computes something else (a
    gate epsilon 10x larger) makes the row FAILED."""
    from tlsearch.model.kernels import edge_gated

    _parity_on_cpu(monkeypatch)
    row = gpu.check_parity(argparse.Namespace())
    assert row.status == "ok" and set(row.numbers) == {"train", "eval"}
    assert row.result.startswith("train float32 on cpu: ") and "; eval float32" in row.result
    monkeypatch.setattr(edge_gated, "GATE_EPS", 1e-1)
    assert gpu.check_parity(argparse.Namespace()).status == "FAILED"


def test_without_ray_its_checks_are_skipped_naming_why(monkeypatch, capsys, no_ray_start):
    """A lent GPU machine has torch and the model core, not Ray: ddp and packing say so."""
    monkeypatch.setattr(gpu, "cuda_refusal", lambda: None)
    monkeypatch.setattr(gpu, "device_line", lambda: "GPU check on 1 x H200")
    monkeypatch.setattr(gpu, "_ray_missing", lambda: "no module named 'ray'")
    assert gpu.main(["--only", "ddp", "packing"]) == 0
    out = capsys.readouterr().out
    assert out.count(" skipped ") == 2 and out.count("Ray is not installed here") == 2
