"""The cluster files agree with the package: one Ray version everywhere (the one the tests run),
explicit GCP worker resources, and the permissions the README asks of the head node.

(``tests/search/test_spec.py`` validates the launcher YAMLs against Ray's schema.)
"""

from __future__ import annotations

import fnmatch
import functools
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
RAY_REQUIREMENT = re.compile(r"""ray\[[a-z,]+\]\s*(==|>=|~=|<=|<|>)?\s*([0-9][0-9.]*)?""")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def _pinned_ray() -> str:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    specs = [s for s in extras["search"] if s.startswith("ray")]
    assert len(specs) == 1, specs
    match = RAY_REQUIREMENT.fullmatch(specs[0])
    assert match and match.group(1) == "==", f"pyproject.toml must pin one Ray: {specs[0]}"
    return match.group(2)


def test_one_ray_version_pinned_everywhere_is_the_one_installed():
    ray = pytest.importorskip("ray")
    version = _pinned_ray()
    assert ray.__version__ == version  # the tests run the pinned Ray
    base = re.search(r"^FROM rayproject/ray:(\S+)", (CLUSTER / "Dockerfile").read_text(), re.M)
    assert base and base.group(1).split("-")[0] == version
    job = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    assert job["spec"]["rayClusterSpec"]["rayVersion"] == version
    for name in ("aws.yaml", "gcp.yaml"):
        config = yaml.safe_load((CLUSTER / name).read_text())
        # setup_commands run on every node, also on workers the autoscaler adds later
        commands = " ; ".join(config["setup_commands"])
        pins = RAY_REQUIREMENT.findall(commands)
        assert pins == [("==", version)], f"{name}: Ray installs {pins}"
        for key in ("head_setup_commands", "worker_setup_commands", "initialization_commands"):
            assert not RAY_REQUIREMENT.findall(" ; ".join(config.get(key) or [])), (name, key)


def _nodes(name: str) -> tuple[dict, list[dict]]:
    config = yaml.safe_load((CLUSTER / name).read_text())
    nodes = config["available_node_types"]
    head = nodes[config["head_node_type"]]
    return head, [n for k, n in nodes.items() if k != config["head_node_type"]]


def test_gcp_workers_state_their_resources():
    """Ray's GCP provider does not read CPUs and GPUs from the machine type: without explicit
    resources the autoscaler never starts a worker for a GPU trial."""
    _, workers = _nodes("gcp.yaml")
    for worker in workers:
        gpus = sum(a["acceleratorCount"] for a in worker["node_config"]["guestAccelerators"])
        cpus = int(worker["node_config"]["machineType"].rsplit("-", 1)[1])
        assert worker["resources"] == {"CPU": cpus, "GPU": gpus}


def test_the_head_has_its_own_role_and_the_readme_lists_the_autoscalers_permissions():
    head, workers = _nodes("aws.yaml")
    head_profile = head["node_config"]["IamInstanceProfile"]["Arn"]
    assert all(w["node_config"]["IamInstanceProfile"]["Arn"] != head_profile for w in workers)
    head, workers = _nodes("gcp.yaml")
    head_account = head["node_config"]["serviceAccounts"][0]["email"]
    assert all(w["node_config"]["serviceAccounts"][0]["email"] != head_account for w in workers)
    readme = (CLUSTER / "README.md").read_text()
    for permission in ("ec2:RunInstances", "ec2:TerminateInstances", "ec2:CreateTags",
                       "ec2:DescribeInstances", "iam:PassRole", "roles/compute.admin",
                       "roles/iam.serviceAccountUser", "roles/storage.objectAdmin"):  # fmt: skip
        assert f"`{permission}`" in readme, permission


# --- KubeRay: data volume, autoscaling, worker groups the paper's specs fit --------------------

SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))
DATA_MOUNT = "/data"


def _kuberay() -> dict:
    return yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())


def _pods(cluster: dict) -> list[tuple[str, dict]]:
    """(group, pod spec) of the head and every worker group."""
    pods = [("head", cluster["headGroupSpec"]["template"]["spec"])]
    return pods + [(g["groupName"], g["template"]["spec"]) for g in cluster["workerGroupSpecs"]]


def _claims() -> set[str]:
    docs = yaml.safe_load_all((CLUSTER / "kuberay-data.yaml").read_text())
    return {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}


def test_every_ray_pod_mounts_the_data_volume_read_only_with_matminer_and_jarvis_in_it():
    claims = _claims()
    assert claims == {"tlsearch-data"}
    for group, pod in _pods(_kuberay()["spec"]["rayClusterSpec"]):
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        container = pod["containers"][0]
        mounts = [
            m
            for m in container.get("volumeMounts", [])
            if volumes[m["name"]].get("persistentVolumeClaim", {}).get("claimName") in claims
        ]
        assert [(m["mountPath"], m.get("readOnly")) for m in mounts] == [(DATA_MOUNT, True)], group
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env.get("MATMINER_DATA") == f"{DATA_MOUNT}/matminer", group  # data_home
        assert env.get("ATOMGPTLAB_CACHE") == f"{DATA_MOUNT}/jarvis", group  # jarvis:dft_2d


def test_the_loader_fills_the_volume_at_the_paths_the_pods_read():
    docs = list(yaml.safe_load_all((CLUSTER / "kuberay-data.yaml").read_text()))
    claim = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    assert "ReadWriteMany" in claim["spec"]["accessModes"]  # pods on several nodes
    loader = next(d for d in docs if d["kind"] == "Pod")["spec"]
    container = loader["containers"][0]
    assert container["volumeMounts"] == [{"name": "data", "mountPath": DATA_MOUNT}]  # writable
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MATMINER_DATA"] == f"{DATA_MOUNT}/matminer"
    assert env["ATOMGPTLAB_CACHE"] == f"{DATA_MOUNT}/jarvis"
    script = container["args"][0]
    assert "load_matminer" in script and "dft_2d_entries" in script
    readme = (CLUSTER / "README.md").read_text()
    assert "kubectl cp ../shared/data/paper tlsearch-data-loader:/data/paper" in readme


def _entrypoint_spec():
    import argparse
    import shlex

    from tlsearch.cli.search import add_search_parser, parse_vars
    from tlsearch.search.plan.points import resolve_datasets
    from tlsearch.search.plan.prepare import prepare_spec

    words = shlex.split(_kuberay()["spec"]["entrypoint"])
    assert words[:2] == ["tlsearch", "search"]
    parser = argparse.ArgumentParser()
    add_search_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(words[1:])
    in_image = Path(args.spec).relative_to("/app")  # the image's copy of the repository
    spec = prepare_spec(REPO / in_image, variables=parse_vars(args.var))
    return resolve_datasets(spec, "/app")  # whatever the job's working directory


def _local_paths(spec) -> list[str]:
    texts = [t for ds in spec.datasets.values() for t in (ds.data, ds.test) if t]
    return [t for t in texts if not re.match(r"^[a-z0-9_]+:", t)]  # matminer:, jarvis:, s3://


def test_the_entrypoint_points_the_specs_paper_files_into_the_mount():
    paths = _local_paths(_entrypoint_spec())
    assert paths and all(p.startswith(f"{DATA_MOUNT}/paper/") for p in paths), paths


def test_the_mounted_layout_holds_the_files_the_entrypoint_reads(paper_data):
    """kubectl cp of ../shared/data/paper to /data/paper gives every file the spec reads."""
    spec = _entrypoint_spec()
    for path in _local_paths(spec):
        local = path.replace(f"{DATA_MOUNT}/paper", str(paper_data), 1)
        filled = local.format(trial=1, seed=0, size=spec.ft_sizes[-1])
        assert Path(filled).is_file(), filled


def test_kuberay_autoscales_every_worker_group_from_zero():
    cluster = _kuberay()["spec"]["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True  # else min/maxReplicas do nothing
    assert cluster["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    for group in cluster["workerGroupSpecs"]:
        low, now, high = group["minReplicas"], group["replicas"], group["maxReplicas"]
        assert 0 <= low <= now <= high and high >= 1, group["groupName"]
        assert low == 0, f"{group['groupName']}: idle GPU pods are removed"


def _quantity(text: str | int | float) -> float:
    text = str(text)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _node_types(name: str) -> list[tuple[dict[str, float], int]]:
    """(resources Ray sees, maximum count) of each worker type of a cluster file."""
    if name == "kuberay-rayjob.yaml":
        out = []
        for group in _kuberay()["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
            limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
            params = group.get("rayStartParams") or {}
            cpu = _quantity(params.get("num-cpus", limits["cpu"]))
            gpu = _quantity(params.get("num-gpus", limits.get("nvidia.com/gpu", 0)))
            out.append(({"CPU": cpu, "GPU": gpu}, group["maxReplicas"]))
        return out
    _, workers = _nodes(name)
    return [({k: float(v) for k, v in w["resources"].items()}, w["max_workers"]) for w in workers]


@functools.cache
def _paper_plan(path: Path):
    from tlsearch.search.plan.compile import compile_spec
    from tlsearch.search.plan.spec import load_spec

    return compile_spec(load_spec(path), str(REPO))


@pytest.mark.parametrize("name", ["kuberay-rayjob.yaml", "aws.yaml", "gcp.yaml"])
def test_every_paper_spec_fits_the_worker_types_and_ddp_jobs_fit_one_node(name):
    from tlsearch.search.run.cluster_fit import Capacity, can_place, plan_demands, unmet_demands

    types = _node_types(name)
    assert all(r["GPU"] >= 1 for r, _ in types)  # every worker type brings GPUs
    capacity = Capacity(nodes=({},), node_types=tuple(types), autoscaling=True)
    ddp_jobs = 0
    for path in SPACES:
        demands = plan_demands(_paper_plan(path))
        assert unmet_demands(demands, capacity) == [], (name, path.name)
        for demand in demands:
            if len(demand.bundles) > 1:  # a DDP PT job: NCCL within one node, not the network
                ddp_jobs += 1
                assert any(can_place(demand.bundles, [r]) for r, _ in types), (name, path.name)
    assert ddp_jobs >= 2  # pt_size and hparam


# --- the image --------------------------------------------------------------------------------


def _docker_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule, for the patterns used here: a path is left out when it,
    or a folder above it, matches a pattern (``**`` any number of folders, other parts by
    ``fnmatch`` within one name; ``!`` patterns re-include)."""

    def matches(parts: list[str], pat: list[str]) -> bool:
        if not pat:
            return not parts
        if pat[0] == "**":
            return any(matches(parts[i:], pat[1:]) for i in range(len(parts) + 1))
        return bool(parts) and fnmatch.fnmatchcase(parts[0], pat[0]) and matches(parts[1:], pat[1:])

    parts = path.split("/")
    ignored = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/").split("/")
        if any(matches(parts[:n], pat) for n in range(1, len(parts) + 1)):
            ignored = not keep
    return ignored


def test_the_image_leaves_out_environments_results_caches_and_data():
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    left_out = [
        ".venv/bin/python", ".git/HEAD", "results/pairwise/runs/a.parquet", "runs/x",
        "tlsearch/search/__pycache__/driver.cpython-311.pyc", ".pytest_cache/v/x",
        ".ruff_cache/x", "tlsearch.egg-info/PKG-INFO", "some/where/rows.parquet",
        "work/run/model.pt", "shared/data/paper/ft/dc/dc_trial1_10.json.gz", "data/paper/x",
        "demo_out/x", ".tlsearch_cache/graphs/a",
    ]  # fmt: skip
    kept = [
        "pyproject.toml", "README.md", "tlsearch/search/run/driver.py", "tlsearch/__init__.py",
        "search_spaces/pairwise.yaml", "cluster/Dockerfile", "tests/search/test_spec.py",
    ]  # fmt: skip
    assert [p for p in left_out if not _docker_ignored(p, patterns)] == []
    assert [p for p in kept if _docker_ignored(p, patterns)] == []
