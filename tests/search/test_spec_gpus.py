"""GPU requests are refused at load time unless Ray and NCCL can honour them: a trial may take a
fraction of one GPU or whole GPUs; DDP workers take whole GPUs, and only with several workers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tlsearch.search.plan.spec import SearchSpec, load_spec


def _spec(**over) -> dict:
    data = {"name": "t", "datasets": {"A": "generated:50:1", "B": "generated:50:2"},
            "targets": ["A"], "pt_sources": ["B"]}  # fmt: skip
    data.update(over)
    return data


@pytest.mark.parametrize("gpu", [0, 0.25, 0.5, 1, 2, 4.0])
def test_a_fraction_of_one_gpu_or_whole_gpus_load(gpu):
    spec = SearchSpec.model_validate(_spec(resources={"cpu": 2, "gpu": gpu}))
    assert spec.resources.gpu == gpu
    pt = SearchSpec.model_validate(_spec(pretrain={"resources": {"gpu": gpu}}))
    assert pt.pretrain.resources.gpu == gpu


def test_a_fraction_above_one_gpu_is_refused():
    with pytest.raises(ValidationError, match=r"resources.gpu\n.*gpu 1.5: above 1 a GPU request "
                       r"must be a whole number \(Ray's rule"):  # fmt: skip
        SearchSpec.model_validate(_spec(resources={"gpu": 1.5}))
    with pytest.raises(ValidationError, match=r"pretrain.resources.gpu\n.*gpu 2.5: above 1"):
        SearchSpec.model_validate(_spec(pretrain={"resources": {"gpu": 2.5}}))
    with pytest.raises(ValidationError, match="smallest resource unit is 0.0001"):
        SearchSpec.model_validate(_spec(resources={"gpu": 0.00001}))


def test_ddp_workers_take_whole_gpus():
    ok = SearchSpec.model_validate(_spec(pretrain={"num_workers": 4, "gpus_per_worker": 1}))
    assert ok.pretrain.gpus_per_worker == 1
    two = SearchSpec.model_validate(_spec(pretrain={"num_workers": 2, "gpus_per_worker": 2}))
    assert two.pretrain.gpus_per_worker == 2
    nccl = r"gpus_per_worker 0.5 with num_workers 4: DDP workers need whole GPUs \(NCCL rejects"
    with pytest.raises(ValidationError, match=nccl):
        SearchSpec.model_validate(_spec(pretrain={"num_workers": 4, "gpus_per_worker": 0.5}))
    with pytest.raises(ValidationError, match="gpus_per_worker 1.5: above 1 a GPU request"):
        SearchSpec.model_validate(_spec(pretrain={"num_workers": 2, "gpus_per_worker": 1.5}))


def test_gpus_per_worker_without_ddp_workers_points_to_the_trials_resources():
    hint = r"0.25 with num_workers 1: .*give the trial the GPU instead: pretrain: \{resources: "
    with pytest.raises(ValidationError, match=hint + r"\{gpu: 0.25\}\}"):
        SearchSpec.model_validate(_spec(pretrain={"gpus_per_worker": 0.25}))


def test_the_error_comes_when_the_spec_file_loads(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: t\ndatasets: {A: 'generated:50:1', B: 'generated:50:2'}\ntargets: [A]\n"
        "pt_sources: [B]\npretrain: {num_workers: 2, gpus_per_worker: 0.25}\n"
    )
    with pytest.raises(ValidationError, match="pretrain\n.*gpus_per_worker 0.25 with num_workers"):
        load_spec(path)
