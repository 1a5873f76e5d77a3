"""Spark jobs: pure transforms (``transforms``) apart from the jobs that wire sources and sinks."""
