"""Catalog: sellers' listings, categories, prices and full-text search."""
