"""One quick PNG of a search: mean test MAE (+- std over seeds) per configuration.

The analysis layer makes the paper's figures; this is the smoke check a quickstart ends with.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tlsearch.search.watch.status import search_status

logger = logging.getLogger(__name__)


def configuration_label(line: dict[str, Any]) -> str:
    """``BG(941)->DC800 unfreeze_all`` style label of a configuration-table line."""
    size = line["ft_size"] if line["ft_size"] is not None else "all"
    target = f"{line['ft_target']}{size}"
    if line["kind"] == "scratch":
        return f"scratch {target} lr={line['lr']:.0e}"
    pt = line["pt_source"] + (f"({line['pt_size']})" if line["pt_size"] else "")
    return f"{pt}->{target} {line['strategy']} lr={line['lr']:.0e}"


def plot_test_mae(search_dir: str | Path, png_path: str | Path | None = None) -> Path:
    """Horizontal bars of mean test MAE per configuration; returns the PNG path.

    Args:
        search_dir: the search folder (``<storage>/<name>``), local.
        png_path: output (default ``<search_dir>/test_mae.png``).

    Raises:
        ValueError: when no configuration has a test MAE yet.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    status = search_status(str(search_dir))
    lines = [line for line in status.table if line["test_mae"] is not None]
    if not lines:
        raise ValueError(f"no completed seed-run with a test MAE in {search_dir}")
    png = Path(png_path) if png_path else Path(search_dir) / "test_mae.png"
    labels = [configuration_label(line) for line in lines]
    means = [line["test_mae"] for line in lines]
    errors = [line["test_mae_std"] or 0.0 for line in lines]
    colours = ["tab:grey" if line["kind"] == "scratch" else "tab:blue" for line in lines]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.35 * len(lines)), dpi=120)
    positions = list(range(len(lines)))[::-1]
    ax.barh(positions, means, xerr=errors, color=colours, capsize=3)
    ax.set_yticks(positions, labels, fontsize=8)
    ax.set_xlabel("test MAE (normalised units; mean +- std over seeds)")
    ax.set_title(f"{Path(search_dir).name}\n{status.counts_line()}", fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    logger.info("wrote %s", png)
    return png
