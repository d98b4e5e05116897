"""Synthetic task generation: inject bugs into working code to make SWE-style tasks."""
