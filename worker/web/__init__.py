"""The web process: Stripe webhooks, usage ingestion, support pages and admin actions."""
