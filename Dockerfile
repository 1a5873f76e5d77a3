# The one image of the platform's own processes (simulator, poller, Spark jobs).
# Third-party services (Kafka, the registry, Prometheus, Grafana) run from their
# upstream images; see docker-compose.yml.
FROM python:3.11-slim-bookworm

# Java runs Spark's driver in-process; Maven resolves the Spark connector jars
# (`streamhouse jars`); procps gives Spark's launcher scripts `ps`.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless maven procps \
    && rm -rf /var/lib/apt/lists/*

# Maven's local repository lives in the jar-cache volume, next to the jars.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    MAVEN_OPTS="-Dmaven.repo.local=/cache/m2"

# The mount points of the named volumes exist in the image, owned by the
# unprivileged user, so Docker initialises each fresh volume writable by it.
RUN useradd --create-home --uid 10001 streamhouse \
    && mkdir -p /data/lake/_checkpoints /data/state /data/kafka-jmx-agent /data/airflow-logs /cache/jars /cache/m2 \
    && chown -R streamhouse:streamhouse /data /cache

WORKDIR /app

# Dependencies first, from the lock, so a code change does not reinstall them.
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY . .
# Editable, so the package finds repo-level files (schemas/*.avsc) next to it;
# --no-deps, so the lock alone decides versions.
RUN pip install --no-deps -e .

USER streamhouse

CMD ["streamhouse", "--help"]
