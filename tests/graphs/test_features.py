"""CGCNN atom features: the table is jarvis-tools' (alignn's) ``cgcnn`` node attributes."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import numpy as np

from tlsearch.graphs.features import NUM_FEATURES, SYMBOLS, atomic_numbers, cgcnn_table


def test_the_table_is_jarvis_cgcnn_features_for_every_element():
    from jarvis.core.specie import get_node_attributes

    table = cgcnn_table()
    assert table.shape == (len(SYMBOLS), NUM_FEATURES) and table.dtype == np.float32
    assert not table[0].any()
    with contextlib.redirect_stdout(io.StringIO()):  # jarvis warns for Z > 100
        expected = [get_node_attributes(s, atom_features="cgcnn") for s in SYMBOLS[1:]]
    np.testing.assert_array_equal(table[1:], np.asarray(expected, dtype=np.float32))
    assert table[atomic_numbers(["Lr"])[0]].tolist() == table[100].tolist()  # jarvis' fallback


def test_reading_the_table_does_not_import_jarvis_specie():
    """``jarvis.core.specie`` costs 0.4-0.5 s per process (every trial process reads graphs)."""
    code = (
        "import sys; from tlsearch.graphs.features import cgcnn_table; cgcnn_table(); "
        "sys.exit('imported' if 'jarvis.core.specie' in sys.modules else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
