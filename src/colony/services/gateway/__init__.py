"""Gateway: the public edge. The REST API, the storefront, authentication and idempotency."""
