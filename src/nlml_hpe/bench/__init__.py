"""Benchmarks: scenes built from labelled faces, and the measurements run on them."""
