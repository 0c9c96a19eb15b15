"""Structures for the benchmarks: the paper's files when present, generated ones otherwise."""

from __future__ import annotations

import logging
from pathlib import Path

from tlsearch.structures.records import StructureRecord

logger = logging.getLogger(__name__)


def bench_records(code: str, root: Path) -> list[StructureRecord]:
    """``<root>/<code>/<code>_trial1_800.json.gz``, or 800 generated structures."""
    if code != "generated":
        path = root / code / f"{code}_trial1_800.json.gz"
        if path.exists():
            from tlsearch.structures.jarvis_json import load_jarvis_json

            records = load_jarvis_json(path).records
            logger.info("bench data %s: %d structures from %s", code, len(records), path)
            return records
        logger.warning("%s not found: using generated structures", path)
    from tlsearch.structures.generate import generate_arrays

    return list(generate_arrays(800, seed=0))
