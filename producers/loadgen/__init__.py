"""Load generator: synthetic ``QuakeChange`` events straight to Kafka at a set rate.

``generator`` (pure: which entity, version, event time; duplicate, out-of-order
and late shares), ``encoding`` (fastavro + Confluent header, schema id
registered once), ``stats`` (counters shared between processes, Prometheus
view), ``runner`` (producer processes), ``bench`` (the throughput benchmark).
"""
