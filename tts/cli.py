"""`swelego tts`: the command group of this room."""

import click


@click.group()
def tts():
    """Test-time scaling: sample k rollouts, pick one with the verifier, score with swebench."""
