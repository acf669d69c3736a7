"""A mail sink: the development SMTP server that notifications send to.

It accepts every message for every recipient and keeps it (``mail_sink.db`` under
``--data-dir``, or in memory), so a developer or a test can see what the marketplace mailed.
Like the payment-provider simulator it stands outside the marketplace: it imports nothing of
the services, only the platform's building blocks.

- SMTP on ``--smtp-port`` (default 8025): no TLS, no auth; any sender, any recipient.
- HTTP on ``--http-port`` (default 8026), JSON: ``GET /messages`` (newest first;
  ``?to=ADDRESS`` matches an envelope recipient, ignoring case; ``?limit=`` up to 1000),
  ``GET /messages/{id}`` (headers, text body and the raw message), ``DELETE /messages``
  (empties the mailbox), ``GET /health``.

Run it with ``colony mail serve`` or ``python -m colony.mail_sink``; embed it with
:func:`running_mail_sink`.
"""

from colony.mail_sink.server import DEFAULT_HTTP_PORT, DEFAULT_SMTP_PORT, running_mail_sink

__all__ = ["DEFAULT_HTTP_PORT", "DEFAULT_SMTP_PORT", "running_mail_sink"]
