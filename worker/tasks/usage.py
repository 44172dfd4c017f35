"""Celery tasks of usage push and month close."""
