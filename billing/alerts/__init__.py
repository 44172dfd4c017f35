"""Alerts: raised once per subject in the transaction of the event behind them, then delivered."""
