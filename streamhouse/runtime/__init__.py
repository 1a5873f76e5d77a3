"""The embedded runtime: resolve jars, start, stop and probe the local services."""
