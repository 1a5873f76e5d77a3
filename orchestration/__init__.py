"""Airflow-side code of the lakehouse DAGs: triggers, sensors, notifiers and task bodies."""
