"""Limits the product checks before it acts, counted in Redis and checkpointed to the database."""
