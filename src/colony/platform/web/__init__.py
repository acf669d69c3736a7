"""Web: problem responses, the HTTP server, request limits and OpenAPI documents."""
