"""Benchmarks (``make bench``); a package so mypy names each module once (bench.<name>)."""
