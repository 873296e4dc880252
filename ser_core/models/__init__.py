"""Models and bundles: the CNN, the embedding head, the registry of model kinds, safe loading, cards."""
