"""Prefect deployments of segflow."""
