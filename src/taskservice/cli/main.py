"""`taskservice`: run the server and its companion commands."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import click

from taskservice.config import Settings, env_name


def _settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add one click option per Settings field (flag --name-with-dashes, env TASKSERVICE_NAME)."""
    for spec in reversed(Settings.options()):
        choices = spec.metadata.get("choices")
        kind: Any = click.Choice(choices) if choices else type(spec.default)
        command = click.option(
            "--" + spec.name.replace("_", "-"),
            spec.name,
            type=kind,
            default=spec.default,
            envvar=env_name(spec.name),
            show_default=True,
            show_envvar=True,
            help=spec.metadata["help"],
        )(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="taskservice")
def cli() -> None:
    """TaskService: a task-management gRPC server."""


@cli.command()
@_settings_options
def serve(**values: Any) -> None:
    """Run the server until SIGTERM or Ctrl-C."""
    from taskservice.app import run
    from taskservice.observability import configure_logging

    settings = Settings(**values)
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(run(settings))
    except OSError as error:
        raise click.ClickException(str(error)) from None


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
