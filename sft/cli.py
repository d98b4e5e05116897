"""`swelego sft`: the command group of this room."""

import click


@click.group()
def sft():
    """Fine-tune on trajectories with error masking and a difficulty curriculum."""
