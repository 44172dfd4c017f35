"""Each org's Stripe seat quantity, converging to what the ledger and the seat policy bill."""
