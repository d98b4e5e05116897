"""`swelego verifier`: the command group of this room."""

import click


@click.group()
def verifier():
    """Train and run the verifier that scores trajectories (P(YES) of a judgement)."""
