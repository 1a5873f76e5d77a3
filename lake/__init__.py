"""The lake: table registry, maintenance and time-travel helpers."""
