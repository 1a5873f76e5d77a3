"""The platform's dashboard: every panel, written once.

Grafana (docker-compose) and the embedded Prometheus' console pages both
render ``OVERVIEW``; a test proves they hold the same panels and queries.
Rates and quantiles come from recording rules (``rules.py``), so a panel and
the alert on the same signal read one expression.
"""

from __future__ import annotations

from monitoring import airflow_health
from monitoring import batch_metrics as batch
from monitoring.dashboards import rules
from monitoring.dashboards.model import Dashboard, Kind, Panel, Query, Row, Unit

_PERCENT = {0.5: "P50", 0.95: "P95", 0.99: "P99"}


def _latency_queries(sink: str, prefix: str = "") -> tuple[Query, ...]:
    return tuple(
        Query(rules.latency_quantile(sink, q), f"{prefix}{_PERCENT[q]}") for q in rules.QUANTILES
    )


LATENCY = Row(
    title="End-to-end latency",
    slug="latency",
    description="From the moment the producer stamped a record (produced_at) to the Delta "
    "commit that made it visible, over the last 5 minutes.",
    panels=(
        Panel(
            title="Latency to bronze (P50 / P95 / P99)",
            description="Kafka -> bronze, the durable copy of the log (ingest query, 1 s trigger).",
            queries=_latency_queries("bronze"),
            unit=Unit.SECONDS,
            fed_by="streaming job (bronze writer)",
        ),
        Panel(
            title="Latency to silver (P50 / P95 / P99)",
            description="Current state per quake, MERGEd every 2 minutes: its latency includes "
            "that trigger.",
            queries=_latency_queries("silver"),
            unit=Unit.SECONDS,
            fed_by="streaming job (silver merger)",
        ),
        Panel(
            title="Latency to the windows (P50 / P95 / P99)",
            description="1-minute tumbling windows (1 s trigger) and the 1-hour sliding windows "
            "rolled up from them (1-minute trigger).",
            queries=(
                *_latency_queries("quake_windows_1m", "1m windows "),
                *_latency_queries("quake_windows_1h", "1h windows "),
            ),
            unit=Unit.SECONDS,
            fed_by="streaming job (window mergers)",
        ),
        Panel(
            title="Latency to the marts and their freshness",
            description="Produced-at to the dbt build that wrote the rows (P50 / P95 / P99 of "
            "the last build), and the age of the newest data each mart holds.",
            queries=(
                *(
                    Query(
                        f'max({batch.MART_LATENCY}{{quantile="{q}"}})', f"last build {_PERCENT[q]}"
                    )
                    for q in batch.MART_QUANTILES
                ),
                Query(rules.MART_DATA_AGE.record, "freshness {{model}}"),
            ),
            unit=Unit.SECONDS,
            fed_by="dbt builds, pushed to the Pushgateway (monitoring/batch_metrics.py)",
        ),
        Panel(
            title="Latency SLO burn rate (1 h)",
            description="How fast the error budget burns: 1 spends it exactly over 30 days. "
            "Bronze: 95 % within 10 s; 1-minute windows: 95 % within 30 s. Pages above 14.4.",
            queries=(Query(rules.burn_rate_record("1h"), "{{sink}}"),),
            unit=Unit.COUNT,
            fed_by="streaming job (latency histograms)",
        ),
    ),
)

THROUGHPUT = Row(
    title="Throughput",
    slug="throughput",
    description="Records per second at each hop, from the HTTP API to the Delta tables.",
    panels=(
        Panel(
            title="Records per second per hop: API, Kafka, Spark",
            description="Read from the API by the poller, committed to the changes topic (poller "
            "and load generator), read back from Kafka by the ingest query.",
            queries=(Query(rules.HOP_RECORD, "{{hop}}"),),
            unit=Unit.PER_SECOND,
            fed_by="poller, load generator, streaming job",
        ),
        Panel(
            title="Rows committed per second per Delta sink",
            description="Rows each query committed: bronze, quarantine, silver, windows, "
            "late events.",
            queries=(Query(rules.SINK_RATES.record, "{{sink}}"),),
            unit=Unit.PER_SECOND,
            fed_by="streaming job",
        ),
        Panel(
            title="Micro-batch duration P95 per query",
            description="Wall time of one micro-batch; above the trigger interval the query "
            "falls behind.",
            queries=(Query(rules.BATCH_DURATION_P95.record, "{{query}}"),),
            unit=Unit.SECONDS,
            fed_by="streaming job (query listener)",
        ),
        Panel(
            title="Kafka broker: messages in per second, per topic",
            description="Records the broker appended, whoever produced them (poller, load "
            "generator, the registry's journal, consumer offsets): the broker's side of the "
            "Kafka hop above.",
            queries=(
                Query(
                    "sum by (topic) (rate(kafka_server_brokertopicmetrics_messagesin_total"
                    '{topic!=""}[1m]))',
                    "{{topic}}",
                ),
            ),
            unit=Unit.PER_SECOND,
            fed_by="Kafka broker (JMX exporter agent)",
        ),
    ),
)

HEALTH = Row(
    title="Backlog and health",
    slug="health",
    description="What is waiting, what was set aside, and whether every process is alive.",
    panels=(
        Panel(
            title="Consumer lag (Kafka offsets behind, per query)",
            description="Offsets between the newest record in Kafka and the query's position, "
            "the largest over partitions.",
            queries=(Query(rules.KAFKA_LAG.record, "{{query}}"),),
            unit=Unit.COUNT,
            fed_by="streaming job (Kafka source progress)",
        ),
        Panel(
            title="Dead letters, quarantine and late events per second",
            description="Records the poller sent to the DLQ topic, records the stream could not "
            "decode (quarantine table), events behind the watermark (late-events table).",
            queries=(
                Query(rules.DEAD_LETTER_RATE.record, "dead-lettered (DLQ topic)"),
                Query(rules.QUARANTINE_RATE.record, "quarantined"),
                Query(rules.LATE_EVENT_RATE.record, "late events"),
            ),
            unit=Unit.PER_SECOND,
            fed_by="poller, streaming job",
        ),
        Panel(
            title="Poller circuit breaker (1 = open)",
            description="Open while the poller pauses after repeated failed polls.",
            queries=(Query("max by (source) (streamhouse_poller_circuit_open)", "{{source}}"),),
            unit=Unit.STATE,
            kind=Kind.STATE,
            max=1.0,
            fed_by="poller",
        ),
        Panel(
            title="Streaming queries: seconds since last progress",
            description="A query reports progress or idleness at every trigger; silence longer "
            "than its stall threshold means it is stalled, not idle.",
            queries=(
                Query(rules.QUERY_SILENCE.record, "{{query}}"),
                Query(
                    "max by (query) (streamhouse_stream_query_stall_threshold_seconds)",
                    "stall threshold {{query}}",
                ),
            ),
            unit=Unit.SECONDS,
            fed_by="streaming job (liveness of the reliability work, issue 11)",
        ),
        Panel(
            title="Catalog database: connections per database, and the limit",
            description="Sessions open on the catalog's PostgreSQL (the Hive metastore of every "
            "Spark process, Airflow's metadata) against its max_connections; 0 lines when it "
            "is down (alert CatalogDatabaseDown).",
            queries=(
                Query("sum by (datname) (pg_stat_activity_count)", "{{datname}}"),
                Query("max(pg_settings_max_connections)", "max_connections"),
            ),
            unit=Unit.COUNT,
            fed_by="postgres-exporter (Debian's prometheus-postgres-exporter, role pg_monitor)",
        ),
        Panel(
            title="Kafka broker: request time P99 (produce, consumer fetch)",
            description="Time from a request's arrival at the broker to its response, the "
            "broker's own P99 over its recent requests. A consumer fetch waits up to "
            "fetch.max.wait.ms (500 ms) for data, so an idle topic's fetches sit near it. "
            "Partitions offline or under min ISR page (KafkaPartitionsUnavailable).",
            queries=(
                Query(
                    'max by (request) (kafka_network_request_total_time_ms{quantile="0.99"}) '
                    "/ 1000",
                    "{{request}}",
                ),
            ),
            unit=Unit.SECONDS,
            fed_by="Kafka broker (JMX exporter agent)",
        ),
        Panel(
            title="Schema registry: requests per second, by status",
            description="Requests the registry answered: registrations by producers, id "
            "lookups by consumers (each caches what it resolved, so a steady stream asks "
            "little). 5xx for two minutes warns (SchemaRegistryErrors).",
            queries=(
                Query(
                    "sum by (status_code_group) "
                    '(rate(rest_requests_seconds_count{job="registry"}[1m]))',
                    "{{status_code_group}}",
                ),
            ),
            unit=Unit.PER_SECOND,
            fed_by="schema registry (Apicurio's Micrometer metrics)",
        ),
        Panel(
            title="Airflow: seconds since each component's heartbeat",
            description="The scheduler, DAG processor and triggerer each write a heartbeat to "
            "the metadata database every few seconds; a line that climbs is a component "
            "that stopped. Unhealthy for two minutes pages (AirflowComponentUnhealthy).",
            queries=(
                Query(f"max by (component) ({airflow_health.HEARTBEAT_AGE})", "{{component}}"),
            ),
            unit=Unit.SECONDS,
            fed_by="Airflow's API server (the plugin in orchestration/airflow_plugins/)",
        ),
        Panel(
            title="Host: CPU cores busy, by mode, and time spent waiting for one",
            description="Cores in use (user, system, iowait...) against the cores there are, "
            "and the share of time some task waited for a core (the kernel's CPU pressure): "
            "on a small machine, the first place latency goes.",
            queries=(
                Query(
                    'sum by (mode) (rate(node_cpu_seconds_total{job="node",mode!="idle"}[1m]))',
                    "{{mode}}",
                ),
                Query('count(node_cpu_seconds_total{job="node",mode="idle"})', "cores"),
                Query(
                    'sum(rate(node_pressure_cpu_waiting_seconds_total{job="node"}[1m]))',
                    "waiting for a core (share of time)",
                ),
            ),
            unit=Unit.COUNT,
            fed_by="node-exporter (Debian's prometheus-node-exporter)",
        ),
        Panel(
            title="Host: memory available and disk free",
            description="Shares of the host's memory and of each writable file system that are "
            "free. Below 15 % of a disk warns and below 5 % pages (HostDiskAlmostFull); below "
            "10 % of memory warns (HostMemoryLow).",
            queries=(
                Query(
                    'node_memory_MemAvailable_bytes{job="node"} '
                    '/ node_memory_MemTotal_bytes{job="node"}',
                    "memory available",
                ),
                Query(rules.DISK_FREE.record, "disk free {{mountpoint}}"),
            ),
            unit=Unit.RATIO,
            fed_by="node-exporter (Debian's prometheus-node-exporter)",
        ),
        Panel(
            title="Processes up",
            description="1 while Prometheus scrapes the process.",
            queries=(Query("up", "{{job}}"),),
            unit=Unit.STATE,
            kind=Kind.STATE,
            max=1.0,
            fed_by="Prometheus",
        ),
    ),
)

BATCH = Row(
    title="Batch: orchestration and data quality",
    slug="batch",
    description="Results the batch jobs push to the Pushgateway after each run "
    "(contract: monitoring/batch_metrics.py).",
    panels=(
        Panel(
            title="Last DAG run state (1 = success, 0 = failed)",
            description="Outcome of each DAG's last finished run.",
            queries=(Query(f"max by (dag_id) ({batch.DAG_RUN_SUCCESS})", "{{dag_id}}"),),
            unit=Unit.STATE,
            kind=Kind.STATE,
            max=1.0,
            fed_by="Airflow DAGs, pushed to the Pushgateway",
        ),
        Panel(
            title="Time since each DAG's last finished run",
            description="Seconds since the DAG's last run finished, successful or not: as the "
            "DAG pushed it, and as Airflow's metadata database has it (every DAG, with no "
            "task of it having to run). lakehouse_daily finishes one a day once bronze's "
            "watermark passed the day's end: past 28 hours DailyRunOverdue pages (scheduler "
            "down, DAG paused, sensor never satisfied). lakehouse_freshness finishes one an "
            "hour: past 3 hours FreshnessCheckOverdue warns.",
            queries=(
                Query(rules.DAG_RUN_AGE.record, "{{dag_id}}"),
                Query(rules.AIRFLOW_DAG_RUN_AGE.record, "Airflow: {{dag_id}}"),
            ),
            unit=Unit.SECONDS,
            fed_by="Airflow DAGs, pushed to the Pushgateway; the Airflow plugin",
        ),
        Panel(
            title="Last Great Expectations result (1 = passed, 0 = failed)",
            description="Outcome of each suite's last validation: 0 when any expectation failed.",
            queries=(Query(f"max by (suite) ({batch.QUALITY_SUCCESS})", "{{suite}}"),),
            unit=Unit.STATE,
            kind=Kind.STATE,
            max=1.0,
            fed_by="Great Expectations checkpoints, pushed to the Pushgateway",
        ),
    ),
)

OVERVIEW = Dashboard(
    uid="streamhouse-overview",
    title="Streamhouse overview",
    description="Latency, throughput, backlog and data quality of the streaming lakehouse; "
    "generated from monitoring/dashboards/definitions.py.",
    rows=(LATENCY, THROUGHPUT, HEALTH, BATCH),
)

DASHBOARDS = (OVERVIEW,)
