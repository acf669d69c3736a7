"""Inventory: stock per listing. Strongly consistent: it refuses rather than oversells."""
