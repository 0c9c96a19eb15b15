"""Training: the paper's recipe, shared by scratch, pre-training, fine-tuning and MPT.

Modules, in data-flow order (import from them directly; this package imports nothing, so that
``tlsearch.training.config`` stays cheap to import):

- ``config``: ``TrainConfig`` (recipe) and ``RunConfig`` (one run, ``config.yaml``).
- ``splits``: seeded 90:10 train/validation split.
- ``scaler``: ``TargetScaler`` (the paper's standardise + min-max to [-1, 1]).
- ``optim``: AdamW without decay on biases/norms, one-cycle schedule per batch.
- ``loop``: seeding, ``GraphLoader`` batches, masked loss, one epoch, early stopping, ``fit``.
- ``metrics``: R2, MAE, RMSE, n.
- ``checkpoint``: ``model.pt`` save/load (everything needed to predict).
- ``run``: ``train_run(RunConfig)`` writing every output file of a run.
"""
