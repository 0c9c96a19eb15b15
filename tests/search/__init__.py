"""Tests of tlsearch.search."""
