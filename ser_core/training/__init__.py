"""Training: examples, shard planning, streamed training windows, metrics and figures."""
