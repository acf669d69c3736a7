async def test_openapi_and_health(client):
    assert (await client.get("/health/live")).status_code == 200
    ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    doc = (await client.get("/api/openapi.json")).json()
    assert "/api/v1/listings" in doc["paths"]
