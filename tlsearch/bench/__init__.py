"""``tlsearch bench``: this project against its peer (the alignn package), in one run.

One module per sub-benchmark; the command's parser and dispatcher are
:mod:`tlsearch.cli.bench`.

Sub-benchmarks (all by default):
- ``graphs``: graph construction structures/s, tlsearch vs alignn's k-nearest builder, with
  an edge-for-edge identity check on the same structures;
- ``train``: training structures/s (forward + backward + AdamW step, batch 16, the paper's model
  size) vs alignn's pure-PyTorch ``ALIGNNAtomWisePure`` at the same widths/depths on the same
  batches (line graph precomputed for both), and achieved GFLOP/s against a matmul roofline
  measured in the same run.
- ``search [SPEC] [--storage DIR]`` (run alone, not by default): a whole search
  (``search_spaces/quickstart.yaml`` by default) in a fresh storage folder: wall time vs training
  time, graph-cache hits, PT jobs run vs requested (:mod:`tlsearch.bench.search`).
- ``packing [--per-device K]`` (run alone, not by default): N fine-tuning runs K per device
  (``gpu: 1/K`` each) vs one at a time, aggregate structures/s (:mod:`tlsearch.bench.packing`).
- ``gpu`` (run alone, not by default; ``scripts/gpu_check.sh``): the GPU check of a CUDA node,
  one table: training throughput vs alignn on CUDA, peak memory of a ``gpu: 0.25`` trial, the
  DDP path on NCCL, packing 4 trials per GPU; exits 2 with one line on a CPU-only node
  (:mod:`tlsearch.bench.gpu`).
- ``frozen [--epochs N] [--size N]`` (run alone, not by default): FT seed-runs of the head-only
  strategies with the frozen trunk computed once (cached features) vs every epoch, wall time
  and ratios (:mod:`tlsearch.bench.frozen`).
- ``rank-sources RESULTS`` (run alone): ``tlsearch rank-sources`` against what a finished search
  fine-tuned: Spearman, best source in the top 2, ranking vs fine-tuning seconds
  (:mod:`tlsearch.bench.rank`).
- ``kernels [--isa native avx2] [--loops native torch]`` (run alone): ``train`` once per
  instruction set (AVX2 forced through torch's, MKL's and oneDNN's switches, and the native CPU
  loops built for AVX2), with the native loops on and off, and per value of the CPU kernels'
  constants, each in its own process: is a slower speed-up the instruction set or constants
  tuned to one CPU, and what do the fused loops give?
  (:mod:`tlsearch.bench.kernels`).

Ratios are what to read; absolute times on shared machines are noise.
"""
