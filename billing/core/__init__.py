"""Values and rules every part of billing uses: money and its one rounding rule, periods, meters,
errors, idempotency keys, and the per-org lock (given a Redis client; nothing else here does I/O).
"""
