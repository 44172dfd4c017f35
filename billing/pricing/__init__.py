"""Price books and what a set of terms charges, pure: the book format, charge lines, seat proration
and resource-hours.
"""
