"""Values and rules every part of billing uses: money and its one rounding rule, periods, meters,
the names of invoice components, errors, every Stripe idempotency key and identifier (keys), and
the per-org lock (given a Redis client; nothing else here does I/O).
"""
