"""The model setting ``kernel``: fused and reference agree on every available device (forward
and every parameter's gradient), and the setting reaches the layers from a config, the Python
API, the command line and a saved model, choosing the path it names."""

from __future__ import annotations

import logging

import pytest
import torch

from tlsearch.model.alignn import ALIGNN, set_kernel
from tlsearch.model.config import ALIGNNConfig
from tlsearch.model.kernel_parity import TOLERANCE, kernel_parity, random_batch
from tlsearch.model.kernels import choice, fused, native
from tlsearch.model.layers import EdgeGatedGraphConv, MLPLayer

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]
TINY = {"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 8, "embedding_features": 8}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("device", DEVICES)
def test_fused_equals_reference_forward_and_gradients(device: str, training: bool):
    """float32: every output, parameter gradient and running moment within 1e-3 of its
    tensor's scale (measured on CPU: <= 1e-4; see kernel_parity.TOLERANCE)."""
    result = kernel_parity(device, training)
    assert result.tensors > 100  # outputs, ~90 parameter gradients, running moments
    assert result.tolerance == TOLERANCE[torch.float32] == 1e-3
    assert result.ok, result.describe()


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_fused_equals_reference_in_float64_on_cpu(training: bool):
    """In float64 the two agree to 1e-10 of each tensor's scale: the same function."""
    result = kernel_parity("cpu", training, torch.float64)
    assert result.ok, result.describe()


@pytest.fixture
def fused_calls(monkeypatch) -> list[str]:
    """Names of the fused forwards called (they still run)."""
    calls: list[str] = []
    for name in ("mlp_forward", "edge_gated_forward"):
        real = getattr(fused, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(fused, name, spy)
    return calls


@pytest.fixture
def no_native_build(monkeypatch) -> list[str]:
    """Fails the test if the C loops are built or loaded (records the attempt)."""
    attempts: list[str] = []

    def refuse():
        attempts.append("library")
        raise AssertionError("the native loops were built or loaded")

    monkeypatch.setattr(native, "library", refuse)
    return attempts


def _layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, MLPLayer | EdgeGatedGraphConv)]


@pytest.mark.parametrize("kernel", ["auto", "reference", "fused"])
def test_the_config_reaches_every_layer(kernel: str, fused_calls):
    model = ALIGNN(ALIGNNConfig(**TINY, kernel=kernel)).train()
    layers = _layers(model)
    # 5 embedding MLPs, 2 convolutions in the ALIGNN layer, 1 GCN layer
    assert len(layers) == 5 + 2 + 1 and {layer.kernel for layer in layers} == {kernel}
    model(random_batch())
    # on a CPU, auto is fused: both fused forwards run, the reference runs none
    both = {"mlp_forward", "edge_gated_forward"}
    assert set(fused_calls) == (set() if kernel == "reference" else both)


def test_set_kernel_changes_a_built_model_and_its_config(fused_calls):
    model = ALIGNN(ALIGNNConfig(**TINY))
    set_kernel(model, "reference")
    assert model.config.kernel == "reference"
    assert {layer.kernel for layer in _layers(model)} == {"reference"}
    model(random_batch())
    assert fused_calls == []
    with pytest.raises(ValueError, match="unknown kernel 'fast'"):
        set_kernel(model, "fast")
    # what a model file records of it (its architecture) holds no kernel
    assert "kernel" not in model.describe()["config"]


def test_an_unknown_kernel_is_refused_by_the_config():
    with pytest.raises(ValueError, match="kernel"):
        ALIGNNConfig(kernel="fast")


def test_auto_on_another_device_runs_the_reference_and_builds_nothing(fused_calls, no_native_build):
    """A model on the 'meta' device (no data: shapes only) with the default kernel."""
    model = ALIGNN(ALIGNNConfig(**TINY)).to("meta").train()
    out = model(random_batch().to("meta"))
    assert out.device.type == "meta" and out.shape == (3, 1)
    assert fused_calls == [] and no_native_build == []


@pytest.mark.parametrize("device", ["cuda", "mps", "meta"])
def test_the_choice_per_device(device: str):
    """auto: fused on CPU only; reference never; fused always (checked: CPU only)."""
    dev = torch.device(device)
    assert choice.uses_fused("auto", torch.device("cpu"))
    assert not choice.uses_fused("auto", dev)
    assert not choice.uses_fused("reference", torch.device("cpu"))
    assert not choice.uses_fused("reference", dev)
    assert choice.uses_fused("fused", dev)


def test_fused_off_cpu_runs_and_warns_once(monkeypatch, caplog, fused_calls):
    monkeypatch.setattr(choice, "_warned", set())
    with caplog.at_level(logging.WARNING, logger=choice.__name__):
        for _ in range(3):
            assert choice.uses_fused("fused", torch.device("cuda"))
    warnings = [r for r in caplog.records if "only been checked on CPU" in r.getMessage()]
    assert len(warnings) == 1 and "cuda" in warnings[0].getMessage()


def test_the_c_loops_are_not_loaded_for_tensors_off_the_cpu(no_native_build):
    """The fused kernel asks :func:`native.usable` before each loop: tensors on another device
    (or in another dtype) are refused before the library is built or loaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the loops' other condition
    try:
        assert not native.usable(torch.ones(2, 2, device="meta"))
        assert not native.usable(torch.ones(2, 2, dtype=torch.float64))
        assert no_native_build == []
        with pytest.raises(AssertionError, match="built or loaded"):
            native.usable(torch.ones(2, 2))  # a CPU float32 tensor: now it would load
    finally:
        torch.set_num_threads(threads)


def test_api_cli_and_saved_models_carry_the_kernel(tmp_path, fused_calls):
    """``model={"kernel": ...}`` in the API and ``--kernel`` on the command line train with the
    path asked; the model file keeps no kernel, so it loads with the one its reader asks."""
    import tlsearch
    from tlsearch.cli.main import main
    from tlsearch.training.checkpoint import load_model

    recipe = {"epochs": 1, "batch_size": 8, "early_stopping_patience": None}
    common = {"recipe": recipe, "overrides": {"cache_dir": None}}
    run = tlsearch.train(
        "generated:24:5", tmp_path / "api", model={**TINY, "kernel": "reference"}, **common
    )
    assert fused_calls == []
    payload = torch.load(run.model_path, weights_only=True)
    assert "kernel" not in payload["model_config"]  # as in files written before the setting
    model, bundle = load_model(run.model_path)
    assert bundle.model_config.kernel == "auto" and model.config.kernel == "auto"
    assert {layer.kernel for layer in _layers(model)} == {"auto"}
    model, _ = load_model(run.model_path, kernel="reference")
    assert {layer.kernel for layer in _layers(model)} == {"reference"}
    # fine-tuning from that file trains with the fine-tuning run's kernel, not the file's
    tlsearch.finetune("generated:24:6", tmp_path / "ft", pretrained=run.out,
                      model={"kernel": "reference"}, **common)  # fmt: skip
    assert fused_calls == []

    argv = ["train", "--data", "generated:24:5", "--out", str(tmp_path / "cli"), "--epochs",
            "1", "--batch-size", "8", "--hidden", "8", "--embedding", "8", "--alignn-layers",
            "1", "--gcn-layers", "1", "--no-cache", "--no-progress",
            "--kernel", "reference"]  # fmt: skip
    assert main(argv) == 0
    assert fused_calls == []
    argv[argv.index("reference")] = "fused"
    argv[argv.index(str(tmp_path / "cli"))] = str(tmp_path / "cli-fused")
    assert main(argv) == 0
    assert set(fused_calls) == {"mlp_forward", "edge_gated_forward"}
