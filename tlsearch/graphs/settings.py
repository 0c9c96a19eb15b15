"""Graph construction settings (part of the graph cache key and of every saved model)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class GraphSettings(BaseModel):
    """The paper's graph: k-nearest neighbours (alignn's ``k-nearest`` strategy).

    Attributes:
        cutoff: initial neighbour search radius in Angstrom; alignn enlarges it when an atom has
            fewer than ``max_neighbors`` neighbours, which never changes the resulting edges.
        max_neighbors: k; every neighbour at or within the k-th nearest distance is kept (ties).
        use_canonize: alignn's canonised images (each undirected bond stored once, then both
            directions added).
        atom_features: node feature set; only CGCNN's 92 features (the paper's) are provided.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cutoff: float = Field(8.0, gt=0)
    max_neighbors: int = Field(12, ge=1)
    use_canonize: bool = True
    atom_features: Literal["cgcnn"] = "cgcnn"

    def cache_token(self) -> str:
        """A stable string for cache keys."""
        return self.model_dump_json()


def default_cache_dir() -> Path:
    """``$TLSEARCH_CACHE`` or ``~/.cache/tlsearch/graphs`` (torch-free, for configs)."""
    env = os.environ.get("TLSEARCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "tlsearch" / "graphs"
