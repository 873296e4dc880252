"""Training: examples, corpora to feature or embedding shards (planning, writing), streamed training windows,
metrics and figures."""
