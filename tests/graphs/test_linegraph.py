"""Line graph and bond cosines against brute force on a hand-built graph."""

from __future__ import annotations

import math

import torch

from tlsearch.graphs.linegraph import bond_cosines, line_graph


def _brute_force(edge_index):
    pairs = edge_index.T.tolist()
    return sorted(
        (a, b) for a, (_, v) in enumerate(pairs) for b, (x, _) in enumerate(pairs) if x == v
    )


def test_line_graph_matches_definition_with_backtracking_and_self_loops():
    # 0->1, 1->0, 1->2, 2->1, 2->2 (self-loop), and a duplicated bond 0->1
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 0], [1, 0, 2, 1, 2, 1]])
    lg = line_graph(edge_index, num_nodes=3)
    assert sorted(map(tuple, lg.T.tolist())) == _brute_force(edge_index)
    # backtracking: 0->1 feeds 1->0; self-loop feeds itself
    assert (0, 1) in set(map(tuple, lg.T.tolist()))
    assert (4, 4) in set(map(tuple, lg.T.tolist()))


def test_line_graph_of_isolated_atoms_is_empty():
    lg = line_graph(torch.tensor([[0], [1]]), num_nodes=3)
    assert lg.shape == (2, 0)


def test_bond_cosines_are_the_angle_at_the_shared_atom():
    # u=0 at origin, v=1 at (1,0,0), w=2 at (1,1,0): angle u-v-w is 90 degrees
    vectors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    lg_index = torch.tensor([[0, 0], [1, 2]])  # (0->1, 1->2) and backtracking (0->1, 1->0)
    cos = bond_cosines(vectors, lg_index)
    assert math.isclose(cos[0].item(), 0.0, abs_tol=1e-7)
    assert math.isclose(cos[1].item(), 1.0, abs_tol=1e-7)  # straight back: angle 0
