"""The ``tlsearch`` command: argument parsers and handlers on top of the Python API.

:mod:`~tlsearch.cli.main` is the entry point (it assembles the parser and dispatches); one module
per command group holds its parsers and handlers: :mod:`~tlsearch.cli.train` (``train``,
``predict``, ``demo``), :mod:`~tlsearch.cli.transfer` (``pretrain``, ``finetune``, ``mpt``,
``rank-sources``), :mod:`~tlsearch.cli.search` (``search``, ``runs``),
:mod:`~tlsearch.cli.analysis` (``analyze``, ``best-pair``, ``compare-paper``) and
:mod:`~tlsearch.cli.bench` (``bench``); :mod:`~tlsearch.cli.common` holds what they share (errors,
exit codes, JSON output). Handlers only parse flags, call :mod:`tlsearch.api` (or the layer that
does the work) and print. This package sits at the top of the layer order: nothing imports it.
"""
