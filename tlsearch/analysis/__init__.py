"""Analysis of a search's Parquet run log: statistics over seeds, the paper's figures and tables,
best-pair discovery and the comparison with the paper's own numbers.

Data flow: :mod:`.frame` (Parquet -> one DataFrame of seed-runs) -> :mod:`.aggregate` (one line
per configuration: mean and 95% t-interval over seeds, failed/diverged counts) -> :mod:`.tables`,
:mod:`.figures`, :mod:`.best_pair`, :mod:`.compare` -> :mod:`.report`. Nothing here imports the
search layer's runner or Ray: ``tlsearch.best_pair(search=...)`` runs a search from the API layer
(:mod:`tlsearch.api.fill`).
"""
