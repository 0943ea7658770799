"""Webhooks: the signed event (events), the outbox and its log (outbox), sending with retries (delivery)."""
