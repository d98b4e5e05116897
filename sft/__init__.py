"""Supervised fine-tuning on trajectories, with error masking and a difficulty curriculum (TRL)."""
