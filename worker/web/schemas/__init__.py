"""Pydantic models of the JSON the HTTP API takes and answers, from which GET /openapi.json is
generated (worker/web/openapi.py)."""
