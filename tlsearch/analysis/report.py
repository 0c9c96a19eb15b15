"""``tlsearch analyze``: every figure and table the results support, and a one-page report.

Writes into ``out``: ``summary.csv`` (one line per configuration, all metrics with CIs and
counts), ``figures/*.png|svg``, ``tables/*.csv|md`` and ``report.md`` + ``report.html`` linking
them, with the search specs, the run counts and the software versions.
"""

from __future__ import annotations

import html
import importlib.metadata
import logging
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tlsearch.analysis import figures, tables
from tlsearch.analysis.aggregate import metric_columns, summarize
from tlsearch.analysis.frame import Results

logger = logging.getLogger(__name__)

HEATMAP_CELLS = (
    "Each cell: test R2 lower-left, test MAE upper-right (means over seeds, n = ok seeds), "
    "blue where good on both colour bars; MAE is coloured relative to the spread of its "
    "target's test values, so targets in different units compare."
)
VERSIONED = ("tlsearch", "torch", "ray", "optuna", "pyarrow", "pandas", "numpy", "pymatgen")


@dataclass
class Section:
    """One part of the report: a title, a caption, figures and tables (paths relative to out)."""

    title: str
    caption: str
    figures: list[Path] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame, Path]] = field(default_factory=list)


def versions() -> dict[str, str]:
    """Installed versions of the packages that produced and read the results."""
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_table(frame: pd.DataFrame, stem: Path) -> Path:
    """``stem.csv`` and ``stem.md``; returns the Markdown path."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(stem.with_suffix(".csv"))
    stem.with_suffix(".md").write_text(frame.to_markdown() + "\n")
    return stem.with_suffix(".md")


def _heatmap_section(lines, title, caption, stem, out, highlight=()) -> Section | None:
    if lines is None or lines.empty:
        return None
    r2 = tables.grid(lines, "row", "column", "test_r2")
    mae = tables.grid(lines, "row", "column", "test_mae")
    counts = lines.pivot_table(index="row", columns="column", values="n_ok", aggfunc="first")
    paths = figures.triangle_heatmap(
        r2, mae, title, out / "figures" / stem, highlight, counts, _mae_scale(lines)
    )
    cells = tables.grid(lines, "row", "column", "test_r2", text=True)
    cells_mae = tables.grid(lines, "row", "column", "test_mae", text=True)
    section = Section(title, caption, [p.relative_to(out) for p in paths if p.suffix == ".png"])
    for name, frame in ((f"{stem}_r2", cells), (f"{stem}_mae", cells_mae)):
        md = write_table(frame, out / "tables" / name)
        section.tables.append((name, frame, md.relative_to(out)))
    return section


def target_spread(lines: pd.DataFrame) -> pd.Series:
    """Per FT target, the standard deviation of its test values, recovered from the metrics
    (``RMSE^2 = (1 - R2) * var`` on one test set): the median over the target's lines."""
    r2 = pd.to_numeric(lines.get("test_r2_mean"), errors="coerce")
    rmse = pd.to_numeric(lines.get("test_rmse_mean"), errors="coerce")
    spread = rmse / np.sqrt((1.0 - r2).where(r2 < 1.0))
    return spread.groupby(lines["ft_target"]).median()


def _mae_scale(lines: pd.DataFrame) -> pd.DataFrame | None:
    """Per heatmap cell, the spread of its target's test values (colours MAE unit-free)."""
    if not {"test_r2_mean", "test_rmse_mean", "ft_target"} <= set(lines.columns):
        return None
    spread = target_spread(lines)
    if spread.dropna().empty:
        return None
    cells = lines.assign(spread=lines["ft_target"].map(spread))
    return cells.pivot_table(index="row", columns="column", values="spread", aggfunc="first")


def _pct_sections(summary: pd.DataFrame, out: Path) -> list[Section]:
    lines = tables.with_pct_change(tables.pair_lines(summary), summary)
    lines = lines[lines["kind"] == "finetune"] if not lines.empty else lines
    if lines.empty or lines["pct_test_r2"].isna().all():
        return []
    sections = []
    by_size = lines[lines["strategy"] == "unfreeze_all"]
    for source, group in by_size.groupby("pt_source"):
        if group["pt_size"].nunique(dropna=False) < 2:
            continue
        size = group["ft_size"].max()
        group = group[group["ft_size"] == size].assign(
            pt_size_label=group["pt_size"].map(tables.size_label)
        )
        stem = f"pct_change_pt_size_{source}"
        paths = figures.pct_change_bars(
            group,
            "ft_target",
            "pt_size_label",
            "pct_test_r2",
            f"PT on {source}: % change in test R2 vs scratch (FT size {tables.size_label(size)})",
            "% change in R2",
            out / "figures" / stem,
        )
        sections.append(_bars_section(f"PT size: {source} (Fig. 5a/b)", paths, group, stem, out))
    if lines["strategy"].nunique() > 1:
        size = lines["ft_size"].max()
        group = lines[lines["ft_size"] == size].assign(
            pair=lambda f: f["pt"] + "-" + f["ft_target"]
        )
        for metric, name in (("pct_test_r2", "R2"), ("pct_test_mae", "MAE")):
            stem = f"pct_change_strategy_{name.lower()}"
            paths = figures.pct_change_bars(
                group,
                "pair",
                "strategy",
                metric,
                f"FT strategies: % change in test {name} vs scratch",
                f"% change in {name}",
                out / "figures" / stem,
            )
            sections.append(
                _bars_section(f"FT strategy, {name} (Fig. 5c/d)", paths, group, stem, out)
            )
    return sections


def _versus_scratch_section(summary: pd.DataFrame, out: Path) -> list[Section]:
    """Every transfer configuration (best lr/sampling per cell) against its scratch baseline."""
    lines = tables.with_pct_change(tables.pair_lines(summary), summary)
    if lines.empty or lines["scratch_test_mae"].isna().all():
        return []
    rows = [
        {
            "PT": line["pt"],
            "FT": f"{line['ft_target']}{tables.size_label(line['ft_size'])}",
            "strategy": line["strategy"],
            "test R2": tables.cell_text(line, "test_r2"),
            "test MAE": tables.cell_text(line, "test_mae"),
            "scratch test MAE": _num(line["scratch_test_mae"]),
            "% change R2": tables.fmt_pct(line["pct_test_r2"]),
            "% change MAE": tables.fmt_pct(line["pct_test_mae"]),
        }
        for _, line in lines.sort_values(["ft_target", "ft_size", "pt"]).iterrows()
    ]
    frame = pd.DataFrame(rows)
    md = write_table(frame, out / "tables" / "transfer_vs_scratch")
    caption = (
        "Every PT-FT configuration against scratch at the same FT target and size (percentage "
        "change as the paper's Sec. 3.2; positive = better). best-pair adds paired tests."
    )
    return [
        Section(
            "Transfer vs scratch",
            caption,
            [],
            [("transfer_vs_scratch", frame, md.relative_to(out))],
        )
    ]


def _num(value: object) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.4g}"


def _bars_section(title: str, paths, group: pd.DataFrame, stem: str, out: Path) -> Section:
    columns = [
        "pt",
        "ft_target",
        "ft_size",
        "strategy",
        "n_ok",
        "test_r2_mean",
        "scratch_test_r2",
        "pct_test_r2",
        "test_mae_mean",
        "scratch_test_mae",
        "pct_test_mae",
    ]
    frame = group[[c for c in columns if c in group]].reset_index(drop=True)
    md = write_table(frame, out / "tables" / stem)
    caption = (
        "Percentage change vs scratch as in the paper (Sec. 3.2): R2 (ours - scratch) * "
        "100 / |scratch|; MAE with the sign flipped so that positive = better."
    )
    return Section(
        title,
        caption,
        [p.relative_to(out) for p in paths if p.suffix == ".png"],
        [(stem, frame, md.relative_to(out))],
    )


def build_sections(results: Results, out: Path) -> list[Section]:
    """Every section the data supports."""
    summary = summarize(
        results.seed_runs, results.planned_seeds(), metric_columns(results.seed_runs, physical=True)
    )
    sections: list[Section] = []
    scratch = tables.scratch_lines(summary)
    section = _heatmap_section(
        scratch,
        "Scratch models (Fig. 4a / 6a)",
        "Rows: FT target; columns: training size. " + HEATMAP_CELLS,
        "heatmap_scratch",
        out,
    )
    sections += [section] if section else []
    pairs = tables.pair_lines(summary)
    for strategy, group in pairs.groupby("strategy") if not pairs.empty else []:
        section = _heatmap_section(
            group,
            f"PT-FT pairs, strategy {strategy} (Fig. 4b)",
            "Rows: PT(size)-FT pair; columns: FT size. Per cell the lr/"
            "sampling with the best validation MAE. " + HEATMAP_CELLS,
            f"heatmap_pairs_{strategy}",
            out,
        )
        sections += [section] if section else []
    matrix = tables.matrix_lines(summary)
    if not matrix.empty and matrix["column"].nunique() > 1:
        best = tables.best_in_column(matrix)
        section = _heatmap_section(
            matrix,
            "PT x FT matrix, strategy 1 (Fig. 6b)",
            "Rows: PT source; columns: FT target at its largest FT size. "
            "Boxed: best PT per FT column by validation MAE (selection "
            "never uses the test set). " + HEATMAP_CELLS,
            "heatmap_matrix",
            out,
            best,
        )
        sections += [section] if section else []
    sections += _versus_scratch_section(summary, out)
    sections += _pct_sections(summary, out)
    mpt = tables.mpt_vs_pairwise(summary)
    if not mpt.empty:
        paths = figures.mpt_bars(
            mpt, "MPT vs best pair-wise vs scratch (Fig. 6c)", out / "figures" / "mpt_vs_pairwise"
        )
        md = write_table(mpt, out / "tables" / "mpt_vs_pairwise")
        sections.append(
            Section(
                "MPT vs best pair-wise vs scratch (Fig. 6c)",
                "Best pair-wise chosen by validation MAE.",
                [p.relative_to(out) for p in paths if p.suffix == ".png"],
                [("mpt_vs_pairwise", mpt, md.relative_to(out))],
            )
        )
    for target in tables.ood_targets(summary):
        frame = tables.target_table(summary, target)
        md = write_table(frame, out / "tables" / f"table1_{target}")
        sections.append(
            Section(
                f"Target {target}: scratch, MPT and each PT source (Table 1)",
                f"{target} is the dataset of no PT source in these results (the paper's Table 1 "
                "asks this of its out-of-distribution 2D band gaps). Each PT source at its best "
                "PT size by validation MAE; largest FT size.",
                [],
                [(f"table1_{target}", frame, md.relative_to(out))],
            )
        )
    summary.to_csv(out / "summary.csv", index=False)
    return sections


def counts_table(results: Results) -> pd.DataFrame:
    """Seed-runs and PT jobs per search and status, against the plans."""
    rows = []
    for directory in results.search_dirs:
        name = Path(str(directory).rstrip("/")).name
        part = results.runs[results.runs["search_dir"] == str(directory)]
        plan = results.plans.get(name, {})
        seed_runs = part[part["kind"] != "pretrain"]
        rows.append(
            {
                "search": name,
                "planned seed-runs": plan.get("planned_seed_runs"),
                "ok": int((seed_runs["status"] == "ok").sum()),
                "failed": int((seed_runs["status"] == "failed").sum()),
                "diverged": int((seed_runs["status"] == "diverged").sum()),
                "skipped": int((seed_runs["status"] == "skipped").sum()),
                "PT jobs planned": plan.get("planned_pretrain_jobs"),
                "PT jobs recorded": int((part["kind"] == "pretrain").sum()),
            }
        )
    return pd.DataFrame(rows)


def analyze(results: Results, out: Path) -> Path:
    """Write every supported figure/table and the report; returns ``report.html``."""
    out.mkdir(parents=True, exist_ok=True)
    sections = build_sections(results, out)
    counts = counts_table(results)
    md = render_markdown(sections, counts, results)
    (out / "report.md").write_text(md)
    path = out / "report.html"
    path.write_text(render_html(sections, counts, results, out))
    logger.info("report: %s (%d sections)", path, len(sections))
    return path


def _preamble(results: Results) -> str:
    planned = results.planned_seeds()
    banner = (
        "**REHEARSAL: a 1+1-layer, 16-wide model trained for 2 epochs to check the plan; "
        "these metrics are not results.** "
        if results.rehearsal
        else ""
    )
    return banner + (
        "Every number is the mean over seeds ± the 95% t-interval (paper SI), n = ok seeds; "
        f"`*` marks a cell with fewer ok seeds than planned ({planned or 'unknown'}); failed "
        "and diverged seed-runs are counted, never dropped silently. Metrics are in the "
        "normalised units the models train in. Where several learning rates/sampling methods "
        "share a cell, the one with the best validation MAE is shown."
    )


def render_markdown(sections: list[Section], counts: pd.DataFrame, results: Results) -> str:
    lines = [
        "# tlsearch report",
        "",
        _preamble(results),
        "",
        "## Runs",
        "",
        counts.to_markdown(index=False),
        "",
    ]
    for section in sections:
        lines += [f"## {section.title}", "", section.caption, ""]
        lines += [f"![{section.title}]({p.as_posix()})" for p in section.figures]
        for name, frame, path in section.tables:
            lines += [
                "",
                f"**{name}** ([csv]({path.with_suffix('.csv').as_posix()}))",
                "",
                frame.to_markdown(),
                "",
            ]
    lines += ["## Software", ""] + [f"- {k} {v}" for k, v in versions().items()]
    for name, spec in results.specs.items():
        lines += ["", f"## Search spec: {name}", "", "```yaml", spec.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def _img(out: Path | None, path: Path) -> str:
    """An ``<img>`` shown at 3/4 of its pixels (the PNGs are drawn at 150 dpi)."""
    width = _png_width(out / path) if out is not None else None
    size = f" width='{round(width * 3 / 4)}'" if width else ""
    return f"<img src='{path.as_posix()}'{size}>"


def _png_width(path: Path) -> int | None:
    try:
        head = path.read_bytes()[:24]
    except OSError:
        return None
    return int.from_bytes(head[16:20], "big") if head[:8] == b"\x89PNG\r\n\x1a\n" else None


def html_table(frame: pd.DataFrame) -> str:
    """``frame`` as HTML: a plain 0..n-1 index left out, floats to 4 significant digits."""
    plain = isinstance(frame.index, pd.RangeIndex)
    return frame.to_html(index=not plain, float_format=lambda v: f"{v:.4g}", na_rep="–")


def render_html(
    sections: list[Section], counts: pd.DataFrame, results: Results, out: Path | None = None
) -> str:
    parts = [
        "<html><head><meta charset='utf-8'><title>tlsearch report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
        "padding:2px 6px}img{max-width:100%}</style></head><body>",
        "<h1>tlsearch report</h1>",
        f"<p>{html.escape(_preamble(results))}</p>",
        "<h2>Runs</h2>",
        html_table(counts),
    ]
    for section in sections:
        parts += [
            f"<h2>{html.escape(section.title)}</h2>",
            f"<p>{html.escape(section.caption)}</p>",
        ]
        parts += [_img(out, p) for p in section.figures]
        for name, frame, path in section.tables:
            parts += [
                f"<h4>{html.escape(name)} (<a href='{path.with_suffix('.csv').as_posix()}'>"
                "csv</a>)</h4>",
                html_table(frame),
            ]
    parts += ["<h2>Software</h2><ul>"]
    parts += [f"<li>{html.escape(k)} {html.escape(v)}</li>" for k, v in versions().items()]
    parts += ["</ul>"]
    for name, spec in results.specs.items():
        parts += [f"<h2>Search spec: {html.escape(name)}</h2><pre>{html.escape(spec)}</pre>"]
    return "\n".join(parts + ["</body></html>"])
