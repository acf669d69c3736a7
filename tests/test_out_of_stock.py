"""A buyer who loses the race for the last units reads which product ran out, by its title."""

from __future__ import annotations

import asyncio

from checkout_helpers import add_to_cart, place, wait_for
from conftest import list_product, sign_up


async def test_the_losers_of_a_race_for_the_last_unit_read_the_products_title(client):
    seller = await sign_up(client, "seller")
    lamp = await list_product(client, seller, stock=1, title="Brass reading lamp")
    rug = await list_product(client, seller, stock=5, title="Wool rug")
    buyers = [await sign_up(client, "buyer") for _ in range(3)]
    for buyer in buyers:
        await add_to_cart(client, buyer, lamp)
        await add_to_cart(client, buyer, rug)
    ids = await asyncio.gather(*(place(client, buyer) for buyer in buyers))
    orders = [await wait_for(client, b, i) for b, i in zip(buyers, ids, strict=True)]
    reasons = sorted(order["cancel_reason"] for order in orders if order["status"] == "cancelled")
    assert reasons == ["Not enough stock for Brass reading lamp (sold out)."] * 2
    assert all(lamp["id"] not in reason for reason in reasons)


async def test_an_order_for_more_than_is_left_says_how_many_are(client):
    seller = await sign_up(client, "seller")
    lamp = await list_product(client, seller, stock=2, title="Brass reading lamp")
    rug = await list_product(client, seller, stock=1, title="Wool rug")
    buyer = await sign_up(client, "buyer")
    await add_to_cart(client, buyer, lamp, 3)
    await add_to_cart(client, buyer, rug, 2)
    order = await wait_for(client, buyer, await place(client, buyer))
    assert order["status"] == "cancelled"
    assert order["cancel_reason"] == (
        "Not enough stock for Brass reading lamp (only 2 left), Wool rug (only 1 left)."
    )
