"""tlsearch: pre-train/fine-tune strategy search for ALIGNN material-property models.

The package follows the data flow: ``structures`` (records in) -> ``graphs`` (k-nearest
graph + line graph, cached on disk) -> ``model`` (ALIGNN in plain PyTorch) -> ``training``
(the paper's recipe) -> ``cli``.
"""

__version__ = "0.1.0"
