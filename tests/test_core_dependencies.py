"""The model core runs without the search stack: with ray, pymatgen, matminer, optuna, pyarrow
and alignn unimportable (as on a lent GPU machine, which has torch and none of ours), a process
reads a graph cache written here, trains through ``train_run`` (the training loop and the
model) and runs the kernel parity check; importing ``tlsearch.bench.train`` and
``tlsearch.bench.gpu`` needs none of them either."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tlsearch.graphs.store import build_graph_store
from tlsearch.structures.load import load_data

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("ray", "pymatgen", "matminer", "optuna", "pyarrow", "alignn")
DATA = "generated:30:1"

CHILD = textwrap.dedent(
    """
    import importlib.abc, json, sys
    from pathlib import Path

    BLOCKED = set(sys.argv[2].split(","))

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked here: {name}")
            return None

    sys.meta_path.insert(0, Block())
    import tlsearch.bench.gpu, tlsearch.bench.train  # noqa: F401
    from tlsearch.model.kernel_parity import kernel_parity
    from tlsearch.training.config import RunConfig
    from tlsearch.training.run import train_run

    out = Path(sys.argv[1])
    cfg = RunConfig(
        data=sys.argv[3], out_dir=out / "run", cache_dir=out / "cache",
        train={"epochs": 1, "batch_size": 8, "early_stopping_patience": None},
        model={"alignn_layers": 1, "gcn_layers": 1, "hidden_features": 8,
               "embedding_features": 8},
    )
    metrics = train_run(cfg, progress=False)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({"epochs": metrics["epochs_run"], "hit": metrics["graph_cache_hit"],
                      "parity": kernel_parity("cpu", True).ok, "loaded": loaded}))
    """
)


def test_reading_a_graph_cache_training_and_the_parity_check_need_no_search_stack(tmp_path):
    records = load_data(DATA).records
    build_graph_store(records, cache_dir=tmp_path / "cache", progress=False)  # the CPU machine
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), ",".join(BLOCKED), DATA],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_WAIT_POLICY": "PASSIVE",
             "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"epochs": 1, "hit": {"train": True}, "parity": True, "loaded": []}
