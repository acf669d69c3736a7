"""Payments service."""
