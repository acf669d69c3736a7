"""What a running Colony shows of itself: metrics for Prometheus (and, in time, traces)."""
