"""Tests of tlsearch.results."""
