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
