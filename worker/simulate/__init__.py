"""`billing simulate`: any timeline of customer events run through the real worker on a Stripe
test clock against the local emulator, reporting what Stripe invoiced and what reconciliation
concluded (SPEC §11)."""
