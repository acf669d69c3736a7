"""Fault injection: faults put between services to show the invariants hold through them."""
