"""The MPT loss (paper Eq. 1) lives with the other losses in :mod:`tlsearch.training.losses`."""

from tlsearch.training.losses import masked_l1

__all__ = ["masked_l1"]
