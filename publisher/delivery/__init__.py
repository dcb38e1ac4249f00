"""Delivery: subscriber addresses, MIME messages, unsubscribe tokens, SMTP and the outbox."""
