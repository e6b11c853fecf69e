"""Benchmarks print the "kernel vs reference (same run)" ratio table they record."""
from ratios import pytest_terminal_summary  # noqa: F401
