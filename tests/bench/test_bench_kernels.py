"""tlsearch bench kernels: one process per instruction set and constants, rows name what ran."""

from __future__ import annotations

import json

import pytest

from tlsearch.bench.kernels import isa_environment, main, settings
from tlsearch.model.kernels import bn_silu


def test_settings_start_at_the_defaults_and_vary_one_constant_at_a_time():
    chunk0 = bn_silu.CHUNK_ELEMENTS.bit_length() - 1
    serial0 = bn_silu.SERIAL_ELEMENTS.bit_length() - 1
    pairs = settings([19, chunk0, 23], [18])
    assert pairs == [(chunk0, serial0), (19, serial0), (23, serial0), (chunk0, 18)]


def test_the_avx2_environment_limits_torch_mkl_and_onednn_and_native_clears_them():
    env = isa_environment("avx2", {"PATH": "/bin"})
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX2" and env["PATH"] == "/bin"
    assert env["TLSEARCH_NATIVE_ARCH"] == "haswell" and env["TLSEARCH_NATIVE"] == "1"
    native_env = isa_environment("native", env, loops="torch")
    assert "ATEN_CPU_CAPABILITY" not in native_env and "TLSEARCH_NATIVE_ARCH" not in native_env
    assert native_env["TLSEARCH_NATIVE"] == "0"


@pytest.mark.peer
def test_each_child_runs_its_own_instruction_set_and_constants(tmp_path):
    pytest.importorskip("alignn.models.alignn_atomwise_pure")
    import torch

    out = tmp_path / "rows.json"
    argv = ["--isa", "native", "avx2", "--chunk-log2", "19", "--serial-log2", "--datasets"]
    argv += ["generated", "--steps", "1", "--warmup", "0", "--batch-size", "2", "--threads", "1"]
    assert main([*argv, "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    chunk0 = bn_silu.CHUNK_ELEMENTS.bit_length() - 1
    assert [(r["isa"], r["loops"], r["chunk_log2"], r["default"]) for r in rows] == [
        ("native", "native", chunk0, True),
        ("native", "native", 19, False),
        ("native", "torch", chunk0, True),
        ("avx2", "native", chunk0, True),
        ("avx2", "native", 19, False),
        ("avx2", "torch", chunk0, True),
    ]
    native = torch.backends.cpu.get_cpu_capability()
    assert {r["cpu_capability"] for r in rows if r["isa"] == "native"} == {native}
    if native != "DEFAULT":  # a CPU with AVX2 or more runs the avx2 children on AVX2
        assert {r["cpu_capability"] for r in rows if r["isa"] == "avx2"} == {"AVX2"}
    from tlsearch.model.kernels import native as loops

    if loops.library() is not None:  # the native loops built for each ISA, off for torch
        flags = {(r["isa"], r["loops"]): r["native_loops"] for r in rows}
        assert "-march=native" in flags["native", "native"]
        assert "-march=haswell" in flags["avx2", "native"]
        assert flags["native", "torch"] is None and flags["avx2", "torch"] is None
    assert all(r["speedup"] > 0 and r["tlsearch_fraction_of_roofline"] > 0 for r in rows)
