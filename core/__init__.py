"""The platform's small core: settings, errors, event schemas, jar and topic look-ups.

Every other package (``producers``, ``spark_jobs``, ``lake``, ``monitoring``,
``marts``, ``quality``, the CLI and the embedded runtime) may import it; it
imports none of them (enforced by import-linter in ``make lint``).
"""
