"""Structures in: every data source becomes a list of :class:`StructureRecord`."""

from tlsearch.structures.load import load_data
from tlsearch.structures.records import LoadResult, Rejection, StructureRecord
from tlsearch.structures.validate import RawRecord, validate_records

__all__ = [
    "LoadResult",
    "RawRecord",
    "Rejection",
    "StructureRecord",
    "load_data",
    "validate_records",
]
