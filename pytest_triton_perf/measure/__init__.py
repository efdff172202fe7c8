"""Measurement: windows, percentiles, stability, server statistics, memory. No pytest import."""
