"""Helpers for the training-script tests."""
