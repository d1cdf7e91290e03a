"""Benchmarks run on demand against the real mail stack (not part of the test suite)."""
