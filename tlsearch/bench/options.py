"""Options of the training bench, shared by ``tlsearch bench [train]`` and ``bench kernels``."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_DATA = Path("..") / "shared" / "data" / "paper" / "ft"


def add_train_options(p: argparse.ArgumentParser, warmup: int) -> None:
    """The training bench's options (shared with ``tlsearch bench kernels``)."""
    p.add_argument(
        "--datasets",
        nargs="+",
        default=["dc", "bg"],
        help="paper dataset codes whose <code>_trial1_800 files are used "
        "(DC: small cells, BG: large cells); 'generated' uses generated data",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        default=DEFAULT_DATA,
        help="folder holding <code>/<code>_trial1_800.json.gz (default ../shared/...)",
    )
    p.add_argument("--steps", type=int, default=8, help="timed training steps per model")
    p.add_argument("--warmup", type=int, default=warmup, help="untimed training steps per model")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--heap",
        choices=["retained", "default"],
        default="retained",
        help="glibc heap while both models train: 'retained' keeps freed memory in the process "
        "as tlsearch's training loop does (tlsearch.training.heap), 'default' is glibc's",
    )
