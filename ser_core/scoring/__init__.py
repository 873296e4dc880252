"""Scoring: one call scored and summarised, its talk metrics, contact metadata, one-file prediction."""
