"""Structures in: every data source becomes a list of :class:`StructureRecord`."""

from tlsearch.structures.records import LoadResult, Rejection, StructureRecord

__all__ = ["LoadResult", "Rejection", "StructureRecord"]
