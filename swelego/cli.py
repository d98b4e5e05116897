"""The `swelego` command. The core defines `env`, `sandbox` and `doctor`; each pipeline room
registers its own group through the `swelego.commands` entry point, loaded on first use so
that `--help` stays fast."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import click
from rich.console import Console
from rich.markup import escape

from swelego import __version__
from swelego.errors import SwelegoError

console = Console(stderr=True)


class RoomGroup(click.Group):
    """A group whose subgroups come from the `swelego.commands` entry points, lazily."""

    def _rooms(self):
        return {ep.name: ep for ep in entry_points(group="swelego.commands")}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self._rooms()))

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is None and name in (rooms := self._rooms()):
            cmd = rooms[name].load()
        return cmd


@click.group(cls=RoomGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="swelego")
def cli():
    """swelego: build SWE-agent training data, train agents with error-masked curriculum SFT,
    and score them on SWE-bench with verifier-based test-time scaling."""


def _register_core() -> None:
    from swelego.doctor import doctor
    from swelego.sandbox.cli import env, sandbox

    cli.add_command(env)
    cli.add_command(sandbox)
    cli.add_command(doctor)


_register_core()


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except SwelegoError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
