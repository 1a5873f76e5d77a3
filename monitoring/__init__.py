"""Metrics helpers shared by the platform's processes, plus Prometheus and Grafana configuration."""
