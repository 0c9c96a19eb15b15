"""The model's CPU speed code: fused, chunked forms of the layers in :mod:`tlsearch.model.layers`.

:mod:`tlsearch.model.layers` holds the equations as plain PyTorch (the ``reference`` kernel);
this package owns the ``fused`` kernel that computes the same functions faster on a CPU: the
layers' fused forwards (:mod:`.fused`), the hand-written autograd functions they run
(:mod:`.edge_gated` for the edge side of an edge-gated convolution, :mod:`.bn_silu` for batch
norm + SiLU), the chunk workers that split their loops over threads (:mod:`.chunk_workers`)
and the C loops compiled on first use (:mod:`.native`). Which kernel a layer runs is the model
setting ``kernel`` (:class:`tlsearch.model.config.ALIGNNConfig`), resolved per device by
:mod:`.choice`: nothing here is built or loaded unless a fused layer runs on a CPU. One
environment variable remains, for benchmarks and tests only: ``TLSEARCH_NATIVE=0`` runs the
fused kernel's loops as torch ops instead of the C loops (``tlsearch bench kernels --loops
torch``); ``TLSEARCH_NATIVE_ARCH`` and ``TLSEARCH_NATIVE_CACHE`` pick the C loops' target CPU and
build folder (:mod:`.native`).
"""
