"""The alert webhook: one alert POSTed as Slack-compatible JSON, or as its plain fields."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal

from billing.alerts.delivery import AlertSendError, OutgoingAlert
from billing.core.money import format_minor_units


@dataclass(frozen=True)
class WebhookAlertSender:
    """POSTs each alert to `url`; anything but a 2xx answer raises AlertSendError."""

    url: str
    format: Literal["slack", "generic"] = "slack"
    timeout_seconds: float = 10.0
    public_url: str | None = None  # the support pages' base URL, for the alert's link

    def send(self, alert: OutgoingAlert) -> None:
        body = json.dumps(self.payload(alert), default=str).encode()
        request = urllib.request.Request(  # noqa: S310 - settings allow only http(s) URLs
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as exc:
            raise AlertSendError(f"the alert webhook answered {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AlertSendError(f"the alert webhook is unreachable: {reason}") from None
        if not 200 <= status < 300:
            raise AlertSendError(f"the alert webhook answered {status}")

    def link(self, alert: OutgoingAlert) -> str | None:
        """The support page of the reconciliation behind the alert (None without one, or
        without BILLING_PUBLIC_URL: a chat client cannot follow a relative link)."""
        if alert.reconciliation_id is None or not self.public_url:
            return None
        return f"{self.public_url.rstrip('/')}/reconciliations/{alert.reconciliation_id}"

    def payload(self, alert: OutgoingAlert) -> dict[str, Any]:
        fields = {
            "id": alert.id,
            "kind": alert.kind,
            "subject": alert.subject_key,
            "summary": alert.summary,
            "org_id": alert.org_id,
            "stripe_invoice_id": alert.stripe_invoice_id,
            "difference_amount": alert.difference_amount,
            "currency": alert.currency,
            "link": self.link(alert),
            "created_at": alert.created_at.isoformat(),
            "details": alert.details,
        }
        if self.format == "generic":
            return fields
        return {"text": f"[billing] {alert.summary}", "blocks": self._blocks(alert)}

    def _blocks(self, alert: OutgoingAlert) -> list[dict[str, Any]]:
        facts = [
            ("Org", alert.org_id),
            ("Invoice", alert.stripe_invoice_id),
            (
                "Difference",
                None
                if alert.difference_amount is None
                else format_minor_units(alert.difference_amount, alert.currency or "usd"),
            ),
        ]
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{alert.summary}*"}}
        ]
        shown = [{"type": "mrkdwn", "text": f"*{name}:* {value}"} for name, value in facts if value]
        if shown:
            blocks.append({"type": "section", "fields": shown})
        link = self.link(alert)
        if link:
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": f"<{link}|Open in support>"}}
            )
        return blocks
