"""A local, stateful Stripe API emulator (2026-10-28.endive subset) for tests, demo, benchmarks.

Usage::

    from stripe_emulator import EmulatorConfig, EmulatorServer
    with EmulatorServer(EmulatorConfig(rate_limit_rps=100)) as emu:
        client = stripe.StripeClient(
            "sk_test_x", base_addresses={"api": emu.url, "meter_events": emu.url}
        )
        ...
        emu.state.meter_total(customer_id, "messages", start, end)

``serve(port, host="127.0.0.1", **config)`` blocks until interrupted (for the CLI).
"""

from stripe_emulator.config import EmulatorConfig
from stripe_emulator.server import EmulatorServer, serve
from stripe_emulator.state import EmulatorState

__all__ = ["EmulatorConfig", "EmulatorServer", "EmulatorState", "serve"]
