"""Benchmarks for meshplane: synthetic meshes, an ADS load client and the scenario runner.

Numbers are measured and reported here (`bench/results/`), never asserted by the test suite.
"""
