"""Front ends: frame features and Whisper-encoder embeddings, and how a bundle turns audio into windows."""
