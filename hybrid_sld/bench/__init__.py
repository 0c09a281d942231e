"""Benchmark grid: tasks x methods x seeds on local processes or a Dask cluster, leaderboards."""
