"""Training: examples, shard planning, streamed training windows, a run's checks and records, evaluation, metrics and figures."""
