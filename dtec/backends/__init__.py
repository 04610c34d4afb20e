"""Backends: turn a compiled blueprint into files (training script, job scripts) via templates."""
