"""Delivery service."""
