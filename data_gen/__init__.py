"""Dataset build: repo sources, real and synthetic tasks, validation, rollouts, filtering."""
