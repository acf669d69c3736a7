"""Deterministic demo data: sellers, buyers, listings in every category, and their stock."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from colony.platform.runtime import Runtime
from colony.platform.security import Actor
from colony.services.catalog.api import CatalogApi, ListingDraft
from colony.services.identity.api import IdentityApi, Registration
from colony.services.inventory.api import InventoryApi

SELLERS = 20
BUYERS = 5
SELLER_PASSWORD = "colony-seller"
BUYER_PASSWORD = "colony-buyer"
ADMIN_PASSWORD = "colony-admin"
_BATCH = 500

_WORDS: dict[str, tuple[list[str], list[str]]] = {
    "electronics": (
        ["Wireless", "Bluetooth", "Smart", "Portable", "Noise-cancelling", "USB-C"],
        ["headphones", "speaker", "charger", "keyboard", "monitor", "camera"],
    ),
    "books": (
        ["Illustrated", "Pocket", "Collected", "Annotated", "First-edition", "Hardcover"],
        ["novel", "cookbook", "atlas", "poetry", "history", "field guide"],
    ),
    "home-kitchen": (
        ["Cast-iron", "Ceramic", "Walnut", "Copper", "Linen", "Enamel"],
        ["skillet", "teapot", "cutting board", "lamp", "towel set", "mug"],
    ),
    "fashion": (
        ["Wool", "Organic cotton", "Leather", "Denim", "Cashmere", "Waxed"],
        ["jacket", "scarf", "boots", "shirt", "belt", "backpack"],
    ),
    "sports-outdoors": (
        ["Ultralight", "Waterproof", "Trail", "Carbon", "Insulated", "Folding"],
        ["tent", "bottle", "running shoes", "bike light", "yoga mat", "kayak"],
    ),
    "toys-games": (
        ["Wooden", "Magnetic", "Cooperative", "Classic", "Puzzle", "Plush"],
        ["train set", "board game", "building blocks", "kite", "doll house", "robot"],
    ),
    "beauty": (
        ["Natural", "Unscented", "Vegan", "Travel-size", "Hydrating", "Mineral"],
        ["soap", "face cream", "shampoo", "lip balm", "serum", "sunscreen"],
    ),
    "garden": (
        ["Galvanised", "Heirloom", "Raised", "Solar", "Terracotta", "Stainless"],
        ["watering can", "seed kit", "planter", "lantern", "pruners", "hose"],
    ),
    "music": (
        ["Acoustic", "Vintage", "Student", "Electric", "Handmade", "Studio"],
        ["guitar", "ukulele", "vinyl record", "drum pad", "microphone", "harmonica"],
    ),
    "grocery": (
        ["Single-origin", "Cold-pressed", "Smoked", "Wildflower", "Stone-ground", "Aged"],
        ["coffee", "olive oil", "sea salt", "honey", "flour", "balsamic"],
    ),
    "pets": (
        ["Chew-proof", "Orthopedic", "Reflective", "Grain-free", "Interactive", "Cosy"],
        ["dog bed", "cat tree", "leash", "treats", "feeder", "collar"],
    ),
    "office": (
        ["Ergonomic", "Recycled", "Fountain", "Standing", "Dot-grid", "Brass"],
        ["chair", "notebook", "pen", "desk", "organizer", "stapler"],
    ),
}
_COLOURS = ["red", "blue", "green", "black", "white", "grey", "amber", "teal", "olive", "navy"]


@dataclass(frozen=True)
class SeedReport:
    sellers: int
    buyers: int
    listings: int
    units: int


def _draft(rng: random.Random, index: int) -> ListingDraft:
    category = list(_WORDS)[index % len(_WORDS)]
    adjectives, nouns = _WORDS[category]
    adjective, noun, colour = rng.choice(adjectives), rng.choice(nouns), rng.choice(_COLOURS)
    title = f"{adjective} {noun} in {colour}"
    return ListingDraft(
        title=title,
        description=(
            f"A {colour} {noun}, {adjective.lower()} and made to last. Item {index + 1:06d}"
            f" of the demo catalogue; ships from the seller's own stock."
        ),
        category=category,
        price_minor=rng.randrange(199, 50_000),
        currency="EUR",
        image_url=None,
    )


async def already_seeded(runtime: Runtime) -> bool:
    return bool(await runtime.databases["identity"].fetch_value("SELECT count(*) FROM accounts"))


async def seed(
    runtime: Runtime,
    size: int = 2000,
    progress: Callable[[str, int, int], None] = lambda task, done, total: None,
) -> SeedReport:
    """Make the demo marketplace: the same data for the same ``size``, every time."""
    rng = random.Random(20261121)
    identity = runtime.client(IdentityApi)
    catalog = runtime.client(CatalogApi)
    inventory = runtime.client(InventoryApi)

    await identity.provision(
        Registration(email="admin@colony.example", password=ADMIN_PASSWORD, name="Colony admin"),
        "admin",
    )
    sellers = []
    for n in range(1, SELLERS + 1):
        account = await identity.register(
            Registration(
                email=f"seller{n:02d}@colony.example",
                password=SELLER_PASSWORD,
                name=f"Seller {n:02d}",
                role="seller",
            )
        )
        sellers.append(Actor(id=account.id, role="seller"))
        progress("accounts", n, SELLERS + BUYERS)
    for n in range(1, BUYERS + 1):
        await identity.register(
            Registration(
                email=f"buyer{n:02d}@colony.example",
                password=BUYER_PASSWORD,
                name=f"Buyer {n:02d}",
                role="buyer",
            )
        )
        progress("accounts", SELLERS + n, SELLERS + BUYERS)

    created = 0
    units = 0
    batch = max(1, min(_BATCH, size // SELLERS))  # every seller gets listings
    for number, start in enumerate(range(0, size, batch)):
        count = min(batch, size - start)
        seller = sellers[number % SELLERS]
        drafts = [_draft(rng, start + i) for i in range(count)]
        listings = await catalog.import_listings(seller, drafts)
        for listing in listings:
            quantity = rng.randrange(0, 200)
            if quantity:
                await inventory.receive_stock(seller, listing.id, quantity)
                units += quantity
        created += count
        progress("listings", created, size)
        await runtime.drain()
    return SeedReport(sellers=SELLERS, buyers=BUYERS, listings=created, units=units)
