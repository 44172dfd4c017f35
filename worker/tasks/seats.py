"""Celery tasks of seat sync."""
