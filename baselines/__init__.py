"""Baseline fine-tuning methods, one folder each (__init__, config.py, method.py)."""
