"""Producers: everything that puts change events on Kafka.

The HTTP poller (a declarative, source-agnostic HTTP source; USGS earthquakes
is its first configuration), the record -> Avro mapping, the Confluent
wire-format serialization, the Kafka producer wiring and the API simulator
that speaks the USGS FDSN event contract on loopback. See README.md.
"""
