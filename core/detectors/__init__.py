"""Anomaly detectors trained only on real, normal images."""
