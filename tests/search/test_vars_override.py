"""``tlsearch search --var NAME=VALUE`` sets one of a spec's vars (data mounted elsewhere)."""

from __future__ import annotations

import pytest

from tests.search.conftest import REPO
from tlsearch.cli.search import parse_vars
from tlsearch.search.plan.prepare import prepare_spec

PAIRWISE = REPO / "search_spaces" / "pairwise.yaml"


def test_a_var_is_replaced_and_its_uses_follow():
    spec = prepare_spec(PAIRWISE, variables=parse_vars(["paper=/data/paper"]))
    assert spec.vars["paper"] == "/data/paper"
    assert spec.datasets["DC"].data.startswith("{paper}/")  # filled in when jobs are built
    assert prepare_spec(PAIRWISE).vars["paper"] == "../shared/data/paper"


def test_an_unknown_or_malformed_var_is_refused():
    with pytest.raises(
        ValueError, match=r"--var papr: the spec has no such var \(its vars: paper\)"
    ):
        prepare_spec(PAIRWISE, variables={"papr": "/data/paper"})
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        parse_vars(["/data/paper"])
    assert parse_vars(["a=b=c", "x="]) == {"a": "b=c", "x": ""}
