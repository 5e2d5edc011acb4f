"""Benchmarks for Hearth (run as scripts; see bench/README.md)."""
