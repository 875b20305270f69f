"""Benchmarks of the proof issue (see docs/performance.md)."""
