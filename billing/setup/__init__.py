"""Stripe holds what the book and the ledger imply: the catalog (products, meters, prices) and each
org's customer and subscription.
"""
