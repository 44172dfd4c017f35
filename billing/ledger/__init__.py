"""What happened to each org: events validated and stored (ingest), read back (queries) as the
expected invoice (computed without I/O), and the local record around every Stripe write.
"""
