"""Reading YAML files that must hold a mapping (run configs, search specs), without torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml_mapping(
    path: Path | str, what: str = "config file", allow_empty: bool = True
) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; errors name ``what`` and the file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid YAML, or not a mapping (an empty file too, unless ``allow_empty``).
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{what} {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{what} {path} is not valid YAML: {exc}") from exc
    if data is None and allow_empty:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a mapping, got {type(data).__name__}")
    return data
