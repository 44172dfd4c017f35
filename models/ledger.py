"""Ledger tables: orgs, the append-only seat ledger, usage events and resource reports."""
