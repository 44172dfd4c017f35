"""What happened to each org: events validated and stored (ingest), read back as the expected
invoice.
"""
