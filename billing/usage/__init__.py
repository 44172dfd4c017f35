"""Metered usage reported to Stripe exactly once: open periods, meter pushes, late-usage
adjustments and the minimum top-up.
"""
