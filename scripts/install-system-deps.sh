#!/usr/bin/env bash
# Install the Debian packages the embedded runtime needs, only those missing.
# Safe to run twice: it installs nothing when everything is present.
set -euo pipefail

missing=()
java_major() {
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}
if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ]; then
  missing+=(openjdk-17-jdk-headless)
fi
command -v mvn >/dev/null || missing+=(maven)
command -v prometheus >/dev/null || missing+=(prometheus)
# The catalog's server (Hive metastore, Airflow's metadata): Debian's PostgreSQL 15,
# run by the stack from /usr/lib/postgresql/15/bin (settings: postgres.bin_dir).
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
# Alerting and the batch jobs' metrics (monitoring/README.md).
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
# The catalog's PostgreSQL as metrics (the stack's postgres-exporter service).
command -v prometheus-postgres-exporter >/dev/null || missing+=(prometheus-postgres-exporter)
# The host's CPU, memory and disks as metrics (the stack's node-exporter service).
command -v prometheus-node-exporter >/dev/null || missing+=(prometheus-node-exporter)
# The dashboards' browser test drives Debian's Chromium through its matching driver;
# no test tool downloads a browser of its own. Another browser already set in the
# settings (a CI image's Chrome and its driver) is used as it is.
[ -x "${STREAMHOUSE_MONITORING__CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing+=(chromium)
[ -x "${STREAMHOUSE_MONITORING__CHROMEDRIVER_PATH:-/usr/bin/chromedriver}" ] || missing+=(chromium-driver)
# `streamhouse airflow graph` draws a DAG with Airflow's renderer through Graphviz's dot.
command -v dot >/dev/null || missing+=(graphviz)
command -v python3.11 >/dev/null || command -v python3 >/dev/null || missing+=(python3 python3-venv)

if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present (java $(java_major), maven, prometheus, postgresql 15, alertmanager, pushgateway, postgres-exporter, node-exporter, chromium, graphviz)"
  exit 0
fi

echo "installing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "error: need root or sudo to install ${missing[*]}; install them and run again." >&2; exit 1; }
  SUDO=sudo
fi
# Debian's prometheus, postgresql, alertmanager, pushgateway, postgres-exporter and
# node-exporter packages would start their own daemons (:9090, :5432, :9093, :9091,
# :9187, :9100) where a service manager
# runs; the runtime starts its own, so keep the packages' off.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  echo exit 101 | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
