"""Sandbox servers (PIM and DAM) for the demo, the tests and the benchmarks."""
