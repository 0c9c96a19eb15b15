"""Spec validation, compilation counts, every search_spaces/*.yaml and every cluster/*.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from tlsearch.search.plan.compile import compile_spec
from tlsearch.search.plan.points import Point, config_hash, run_id_for, sources_for
from tlsearch.search.plan.prepare import smoke_spec
from tlsearch.search.plan.spec import SearchSpec, load_spec

REPO = Path(__file__).resolve().parents[2]
SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))
CLUSTER = REPO / "cluster"

# seed-runs and PT jobs the paper's experiments plan (also in search_spaces/README.md)
EXPECTED = {
    "quickstart": (30, 1),
    "hparam": (960, 3),
    "ft_size": (175, 3),
    "pt_size": (335, 10),
    "ft_strategy": (500, 3),
    "pairwise": (1225, 7),
    "mpt": (350, 7),
    "ood_2d": (35, 6),
    "best_pair": (200, 6),
    "pairwise_cpu": (18, 2),
    "paper_scratch_cpu": (6, 0),
    "rank_check_cpu": (36, 6),
}


def minimal(**over) -> dict:
    data = {
        "name": "t",
        "datasets": {"A": "generated:50:1", "B": "generated:50:2", "C": "generated:50:3"},
        "targets": ["A"],
        "pt_sources": ["B"],
    }
    data.update(over)
    return data


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_every_search_space_loads_and_compiles(path):
    spec = load_spec(path)
    plan = compile_spec(spec, str(REPO))
    assert spec.name == path.stem
    assert (plan.planned_seed_runs, len(plan.pretrain_jobs)) == EXPECTED[spec.name]
    json.dumps(plan.summary())  # plan.json is writable
    smoke = compile_spec(smoke_spec(spec), str(REPO))
    assert 0 < smoke.planned_seed_runs <= plan.planned_seed_runs


def test_all_paper_experiments_are_there():
    assert {p.stem for p in SPACES} == set(EXPECTED)
    assert (REPO / "search_spaces" / "README.md").is_file()


def test_unknown_keys_name_the_key_and_the_allowed_ones():
    with pytest.raises(ValidationError, match=r"unknown key\(s\) \['seedz'\]; allowed: name"):
        SearchSpec.model_validate(minimal(seedz=[0]))
    with pytest.raises(ValidationError, match=r"\['algo'\]; allowed: algorithm, num_samples"):
        SearchSpec.model_validate(minimal(search={"algo": "grid"}))
    with pytest.raises(
        ValidationError, match=r"train: unknown key\(s\) \['epoch'\]; allowed.*epochs"
    ):
        SearchSpec.model_validate(minimal(train={"epoch": 3}))
    with pytest.raises(ValidationError, match=r"model.hidden_features"):
        SearchSpec.model_validate(minimal(model={"hidden_features": -1}))


def test_bad_values_name_the_allowed_values():
    with pytest.raises(ValidationError, match="'grid' or 'optuna'"):
        SearchSpec.model_validate(minimal(search={"algorithm": "random"}))
    with pytest.raises(ValidationError, match="'unfreeze_all'.*'new_head_unfreeze_all'"):
        SearchSpec.model_validate(minimal(strategies=["freeze_everything"]))
    with pytest.raises(ValidationError, match="'random', 'weighted' or 'uniform'"):
        SearchSpec.model_validate(minimal(sampling=["stratified"]))


def test_cross_checks():
    with pytest.raises(
        ValidationError, match="targets\\[1\\]: unknown dataset 'Z'; defined: A, B, C"
    ):
        SearchSpec.model_validate(minimal(targets=["A", "Z"]))
    with pytest.raises(ValidationError, match="train.seed is not allowed here: set 'seeds'"):
        SearchSpec.model_validate(minimal(train={"seed": 1}))
    with pytest.raises(ValidationError, match="loguniform range needs search.algorithm optuna"):
        SearchSpec.model_validate(minimal(lr={"loguniform": [1e-4, 1e-2]}))
    with pytest.raises(ValidationError, match="unknown placeholder \\{sise\\}"):
        SearchSpec.model_validate(minimal(datasets={"A": "f_{sise}.json", "B": "generated:5"}))
    with pytest.raises(ValidationError, match="exactly one of dataset, mpt, checkpoint"):
        SearchSpec.model_validate(minimal(pt_sources=[{"dataset": "B", "checkpoint": "x.pt"}]))
    with pytest.raises(ValidationError, match="pairs\\[0\\]: unknown PT source 'C'"):
        SearchSpec.model_validate(minimal(pairs=[["C", "A"]]))
    with pytest.raises(ValidationError, match="nothing to run"):
        SearchSpec.model_validate(minimal(pt_sources=[], scratch=False))


def test_the_spec_accepts_every_implemented_strategy_and_no_other():
    """The spec's names against the transfer layer's registry of implementations (scratch is
    the spec's own ``scratch`` switch, not a strategy)."""
    strategies = pytest.importorskip("tlsearch.transfer.strategies")
    implemented = sorted(set(strategies.STRATEGIES) - {"scratch"})
    assert SearchSpec.model_validate(minimal(strategies=implemented)).strategies == implemented
    for name in ("scratch", "unfreeze_half"):
        with pytest.raises(ValidationError, match="strategies"):
            SearchSpec.model_validate(minimal(strategies=[name]))


def test_grid_counts_and_pairs():
    spec = SearchSpec.model_validate(
        minimal(
            targets=["A", "B", "C"],
            pt_sources=["A", "B", "C"],
            scratch=True,
            ft_sizes=[10, 20],
            lr=[1e-3, 1e-2],
            seeds=[0, 1, 2],
        )
    )
    plan = compile_spec(spec)
    # (3 scratch + 3 x 2 pairs) x 2 sizes x 2 learning rates, x 3 seeds: one trial each
    assert plan.experiments[0].planned_trials == (3 + 6) * 2 * 2 * 3
    assert plan.planned_seed_runs == 36 * 3
    assert len(plan.pretrain_jobs) == 3  # shared PT seed: one job per source
    assert [s.name for s in sources_for(spec, "A")] == ["B", "C"]


def test_same_property_is_never_paired_and_per_seed_pretraining():
    spec = SearchSpec.model_validate(
        minimal(
            datasets={
                "A": "generated:50:1",
                "A_pt": {"data": "generated:80:1", "property": "A"},
                "B": "generated:50:2",
            },
            pt_sources=[{"name": "A", "dataset": "A_pt"}, "B"],
            targets=["A", "B"],
            pretrain={"seed_mode": "per_seed"},
            seeds=[0, 1],
        )
    )
    assert [s.name for s in sources_for(spec, "A")] == ["B"]
    assert [s.name for s in sources_for(spec, "B")] == ["A"]
    assert len(compile_spec(spec).pretrain_jobs) == 4  # 2 sources x 2 seeds


def test_optuna_cells():
    spec = SearchSpec.model_validate(
        minimal(
            targets=["A", "B"],
            pt_sources=["A", "B", "C"],
            ft_sizes=[10, 20],
            scratch=True,
            lr={"loguniform": [1e-4, 1e-2]},
            search={
                "algorithm": "optuna",
                "num_samples": 4,
                "optuna_axes": ["pt_source", "strategy", "lr"],
            },
        )
    )
    plan = compile_spec(spec)
    names = [e.name for e in plan.experiments]
    assert names[0] == "baselines" and len(names) == 1 + 2 * 2  # cells: target x FT size
    cell = plan.experiments[1]
    assert cell.algorithm == "optuna" and cell.num_samples == 4
    assert cell.space["pt_source"].values == ("B", "C") and cell.space["lr"].low == 1e-4
    assert plan.planned_seed_runs == 2 * 2 * 5 + 4 * 4 * 5


def test_run_ids_are_stable_and_change_with_the_recipe():
    spec = SearchSpec.model_validate(minimal())
    point = Point("finetune", "A", 10, "random", 1e-3, "B", None, "unfreeze_all")
    assert run_id_for(spec, point, 3) == f"{config_hash(spec, point)}-s3"
    assert config_hash(spec, point) == config_hash(SearchSpec.model_validate(minimal()), point)
    other = SearchSpec.model_validate(minimal(train={"epochs": 7}))
    assert config_hash(other, point) != config_hash(spec, point)
    assert config_hash(spec, point) != config_hash(spec, Point("scratch", "A", 10, "random", 1e-3))


REQUIRED_LAUNCHER_KEYS = {
    "cluster_name",
    "provider",
    "auth",
    "available_node_types",
    "head_node_type",
    "setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
    "max_workers",
}


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_cluster_launcher_configs(name):
    config = yaml.safe_load((CLUSTER / name).read_text())
    assert set(config) >= REQUIRED_LAUNCHER_KEYS
    assert config["provider"]["type"] == name.removesuffix(".yaml")
    nodes = config["available_node_types"]
    assert config["head_node_type"] in nodes
    assert nodes[config["head_node_type"]]["resources"] == {"CPU": 0}
    workers = [n for k, n in nodes.items() if k != config["head_node_type"]]
    assert workers and all("node_config" in n and "max_workers" in n for n in workers)
    assert any("tlsearch" in cmd and "pip install" in cmd for cmd in config["setup_commands"])
    assert any("--head" in cmd for cmd in config["head_start_ray_commands"])
    # and the schema Ray's launcher validates against
    jsonschema = pytest.importorskip("jsonschema")
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)


def test_kuberay_rayjob():
    job = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["spec"]["entrypoint"].startswith("tlsearch search ")
    cluster = job["spec"]["rayClusterSpec"]
    assert "headGroupSpec" in cluster and cluster["workerGroupSpecs"]
    limits = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]
    assert limits["limits"]["nvidia.com/gpu"] == "1"
    for doc in ("README.md", "onprem.md"):
        text = (CLUSTER / doc).read_text()
        assert "ray start" in text or "ray up" in text
    assert "ray start --head" in (CLUSTER / "onprem.md").read_text().replace(".venv/bin/", "")
    readme = (CLUSTER / "README.md").read_text()
    assert "ray job submit" in readme and "s3://" in readme and "gs://" in readme


def test_validating_and_compiling_a_spec_does_not_import_torch():
    """The driver process never trains: validating the model/train/graph overrides and
    compiling the plan must not pay torch's import (seconds per search)."""
    import subprocess
    import sys

    code = (
        "import sys; from tlsearch.search.plan.spec import load_spec; "
        "from tlsearch.search.plan.compile import compile_spec; "
        "from tlsearch.search.run import driver; "
        f"compile_spec(load_spec({str(REPO / 'search_spaces' / 'quickstart.yaml')!r}), '.'); "
        "sys.exit('torch imported' if 'torch' in sys.modules else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_grid_trials_start_with_the_largest_ft_sizes():
    """Longest trials first (scratch before transfer, then by FT size, whole-trunk training
    before head-only), each configuration's seeds in turn: the last trials to start are
    short."""
    over = {"ft_sizes": [40, None, 80], "strategies": ["last_layer", "unfreeze_all"]}
    spec = load_spec(REPO / "search_spaces" / "quickstart.yaml", over)
    (main,) = compile_spec(spec, str(REPO)).experiments
    seeds = [0, 1, 2, 3, 4]
    configs = [("scratch", None, None), ("scratch", 80, None), ("scratch", 40, None)] + [
        ("finetune", size, strategy)
        for size in (None, 80, 40)
        for strategy in ("unfreeze_all", "last_layer")
    ]
    order = [(p["kind"], p["ft_size"], p["strategy"], p["seed"]) for p in main.points]
    assert order == [(*c, seed) for c in configs for seed in seeds]
    assert main.planned_trials == 9 * 5 == main.planned_seed_runs


def test_trials_are_configurations_where_a_searcher_or_asha_ranks_them():
    """ASHA (grid) and Optuna cells rank configurations by their mean over seeds: one trial
    runs all of a configuration's seeds there; a plain grid has one trial per seed-run."""
    asha = {"algorithm": "grid", "asha": {"grace_period": 1, "reduction_factor": 2}}
    spec = SearchSpec.model_validate(minimal(scratch=True, seeds=[0, 1, 2], search=asha))
    (main,) = compile_spec(spec).experiments
    assert not main.per_seed and all("seed" not in p for p in main.points)
    assert (main.planned_trials, main.planned_seed_runs) == (2, 6)
    optuna = {"algorithm": "optuna", "num_samples": 2, "optuna_axes": ["strategy"]}
    spec = SearchSpec.model_validate(
        minimal(
            scratch=True, seeds=[0, 1, 2], strategies=["unfreeze_all", "last_layer"], search=optuna
        )  # fmt: skip
    )
    baselines, cell = compile_spec(spec).experiments
    assert baselines.per_seed and [p["seed"] for p in baselines.points] == [0, 1, 2]
    assert not cell.per_seed and cell.planned_seed_runs == 2 * 3
