"""The cluster files agree with the package: one Ray version everywhere (the one the tests run),
explicit GCP worker resources, and the permissions the README asks of the head node.

(``tests/search/test_spec.py`` validates the launcher YAMLs against Ray's schema.)
"""

from __future__ import annotations

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
