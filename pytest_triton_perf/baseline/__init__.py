"""Baselines: storage, environment keys, comparison statistics. No pytest import."""
