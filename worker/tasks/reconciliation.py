"""Celery tasks of reconciliation: webhook handling, invoice reconciliation, sweeps."""
