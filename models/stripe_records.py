"""Local records of Stripe objects: catalog (products, meters, prices), customers, subscriptions."""
