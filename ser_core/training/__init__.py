"""Training: examples, corpora to feature or embedding shards (planning, writing), streamed training windows, a
run's checks and records, evaluation, metrics and figures."""
