"""Reconciliation results, their lines and traces, and the Stripe webhook inbox."""
