"""The Prefect flows: the DAG, readable top to bottom."""
