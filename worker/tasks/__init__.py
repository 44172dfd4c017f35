"""Celery tasks: thin wrappers (ids and ISO dates in, one service call, out)."""
