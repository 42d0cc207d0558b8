"""Algorithms, one module each; every one trains as a generator of metrics (see DESIGN.md)."""
