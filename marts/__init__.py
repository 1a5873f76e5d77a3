"""The marts: the dbt project in ``dbt/`` run on the platform's Spark and catalog."""
