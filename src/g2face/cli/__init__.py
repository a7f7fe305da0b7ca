"""The `g2face` command line: argument parsing only; every command calls the library.

Subcommands are imported lazily so `g2face --help` and `g2face weights list` start without
importing torch.
"""

from __future__ import annotations

import importlib
import warnings

import click

from g2face import __version__

# command name -> "module:attribute" of its click command
_COMMANDS = {
    "anonymize": "g2face.cli.anonymize:anonymize",
    "recover": "g2face.cli.anonymize:recover",
    "weights": "g2face.cli.weights:weights",
    "detect": "g2face.cli.detect:detect",
    "keygen": "g2face.cli.keygen:keygen",
    "eval": "g2face.cli.evaluate:evaluate",
    "train": "g2face.cli.train:train",
    "data": "g2face.cli.data:data",
    "bench": "g2face.cli.evaluate:bench",
    "serve": "g2face.cli.serve:serve",
    "video": "g2face.cli.video:video",
    "export": "g2face.cli.export:export",
}


class _LazyGroup(click.Group):
    def invoke(self, ctx: click.Context):
        from g2face.hub import HubError

        previous, warnings.formatwarning = warnings.formatwarning, _one_line_warning
        try:
            return super().invoke(ctx)
        except HubError as e:  # the cache folder itself is unusable, whichever command met it
            raise click.ClickException(str(e)) from None
        finally:
            warnings.formatwarning = previous

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="g2face")
def cli() -> None:
    """Reversible face anonymization: replace every face with a realistic different identity
    that keeps pose, expression, lighting and background; recover it with the password."""


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as users see them: `warning: <message>`, one line, no source location."""
    from g2face.io import printable  # imported here: `g2face --help` stays light

    return f"warning: {printable(str(message))}\n"


def main() -> None:
    cli()
