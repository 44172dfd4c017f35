"""Stripe invoices checked against the ledger and explained: the reconciler, line matching, stored
results, the webhook inbox and the price drift check.
"""
