"""Spark engine: code that runs inside the Spark driver."""
