"""`swelego data`: the command group of this room."""

import click


@click.group()
def data():
    """Build datasets: tasks from real and synthetic bugs, validated in sandboxes, and agent trajectories."""
