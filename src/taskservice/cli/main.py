"""`taskservice`: run the server and its companion commands."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from taskservice.bench import EXTRA_GROUPS, GROUPS
from taskservice.server.config import Settings, SettingsError, env_name
from taskservice.store.faults import StoreUnusable


def _settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add one click option per Settings field (flag --name-with-dashes, env TASKSERVICE_NAME)."""
    for spec in reversed(Settings.options()):
        choices = spec.metadata.get("choices")
        repeatable = isinstance(spec.default, tuple)  # tuple settings take the flag several times
        kind: Any = click.Choice(choices) if choices else (str if repeatable else type(spec.default))
        command = click.option(
            "--" + spec.name.replace("_", "-"),
            spec.name,
            type=kind,
            is_flag=isinstance(spec.default, bool),
            multiple=repeatable,
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
    from taskservice.server.app import serve as serve_here
    from taskservice.telemetry.observability import configure_logging

    settings = Settings(**values)
    configure_logging(settings.log_level, settings.log_format)
    try:
        if settings.workers > 1:
            from taskservice.server.workers import serve_workers

            raise SystemExit(serve_workers(settings))
        serve_here(settings)
    except (OSError, SettingsError, StoreUnusable, ValueError) as error:
        raise click.ClickException(str(error)) from None


_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """`90`, `90s`, `15m`, `1h`, `7d` → seconds."""
    unit = text[-1:].lower()
    number = text[:-1] if unit in _TTL_UNITS else text
    try:
        seconds = float(number) * _TTL_UNITS.get(unit, 1)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration like 30m, 1h or 7d") from None
    if seconds <= 0:
        raise click.BadParameter("must be positive")
    return seconds


@cli.command()
@click.option("--user", required=True, help="user id (the token's `sub`)")
@click.option("--admin", is_flag=True, help="give the token the admin role")
@click.option(
    "--service",
    is_flag=True,
    help="give the token the service role: a backend that may hold --max-streams-per-service streams",
)
@click.option("--ttl", default="1h", show_default=True, help="lifetime: 30m, 1h, 7d, …")
@_settings_options
def token(user: str, admin: bool, service: bool, ttl: str, **values: Any) -> None:
    """Print a token signed with the server's key (same --data-dir / --jwt-secret-file as serve)."""
    from taskservice.access.auth import mint_token

    try:
        click.echo(mint_token(Settings(**values), user, admin=admin, service=service, ttl=_duration(ttl)))
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


@cli.command()
@click.option(
    "--server",
    default="http://127.0.0.1:8080",
    envvar="TASKSERVICE_STATS_SERVER",
    show_default=True,
    show_envvar=True,
    help="the server's HTTP address (where /metrics is)",
)
@click.option(
    "--interval",
    type=float,
    default=2.0,
    show_default=True,
    help="seconds between the two scrapes that rates and latencies are computed over (0: since start)",
)
def stats(server: str, interval: float) -> None:
    """Per-method rate, error ratio and p50/p99 latency, watchers and lag of a running server."""
    from taskservice.cli.stats import show

    try:
        show(server, interval)
    except OSError as error:
        raise click.ClickException(f"cannot read {server}/metrics: {error}") from None


@cli.command()
@click.option("--store", default="", envvar=env_name("store"), show_envvar=True, help="the store to migrate")
@click.option("--data-dir", default="./data", envvar=env_name("data_dir"), show_envvar=True)
def migrate(store: str, data_dir: str) -> None:
    """Apply pending schema migrations and exit (the server also applies them when it starts)."""
    from taskservice.store import open_store

    async def apply() -> None:
        opened = open_store(Settings(store=store).store_url, data_dir)
        await opened.open()
        await opened.close()

    try:
        asyncio.run(apply())
    except (OSError, StoreUnusable, ValueError) as error:
        raise click.ClickException(str(error)) from None
    click.echo("migrations applied")


@cli.command()
@click.option(
    "--quick", is_flag=True, help="small sizes and short runs (about a minute); targets are not judged"
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("bench-results.json"))
@click.option("--chart", type=click.Path(dir_okay=False, path_type=Path), default=Path("bench-results.png"))
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".bench-cache"),
    show_default=True,
    help="where generated databases (up to a million tasks) are kept between runs",
)
@click.option("--keep", is_flag=True, help="keep the run's folder (server logs, databases)")
@click.option(
    "--only",
    type=click.Choice((*GROUPS, *EXTRA_GROUPS)),
    multiple=True,
    help="run only this group of scenarios (repeatable), each still against the ceiling: list "
    "(ListTasks at 1k), unary (CreateTask, GetTask, the p99, UpdateTask), bulk, watch (fan-out, "
    "idle watchers), large (1M tasks: start-up, RSS, ListTasks against 1k), events (CreateTask with "
    "--export to NATS and Redis and a webhook: export and delivery delay), http (REST and Connect "
    "GetTask on the HTTP port against gRPC GetTask), matrix (every list filter by every order, "
    "filter-language and full-text queries, at 1M against 1k, in-process); scale (SQLite against "
    "1-3 PostgreSQL replicas; needs --postgres) runs only when named",
)
@click.option(
    "--postgres",
    envvar="TASKSERVICE_BENCH_POSTGRES",
    default="postgresql://postgres@127.0.0.1:5432/postgres",
    show_default=True,
    help="an administrative connection for --only scale, which creates and drops its own databases",
)
@click.option(
    "--server-source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="run the measured server from the taskservice package in this folder (the src/ of another "
    "checkout, e.g. a git worktree) to compare two versions run by run; the ceiling and the load stay "
    "this checkout's",
)
def bench(
    quick: bool,
    out: Path,
    chart: Path,
    cache_dir: Path,
    keep: bool,
    only: tuple[str, ...],
    postgres: str,
    server_source: Path | None,
) -> None:
    """Measure the server against a do-nothing grpcio server in the same run (see docs/performance.md)."""
    from taskservice.bench import h2load, scenarios
    from taskservice.telemetry.observability import configure_logging

    configure_logging("warning")
    try:
        h2load.executable()
    except h2load.H2LoadMissing as error:
        raise click.ClickException(str(error)) from None
    plan = scenarios.Plan.fast() if quick else scenarios.Plan.full()
    groups = frozenset(only or GROUPS)
    scenarios.run(
        plan, cache_dir, out, chart, keep, lambda line: click.echo(line), groups, server_source, postgres
    )


@cli.command("bench-board")
@click.option(
    "--tasks",
    "sizes",
    type=click.IntRange(min=1),
    multiple=True,
    help="board sizes to measure (repeatable; default 100 and 100,000)",
)
@click.option("--quick", is_flag=True, help="100 and 5,000 tasks: the quick form CI runs")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("bench-board.json"))
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".bench-cache"),
    show_default=True,
    help="where generated databases are kept between runs",
)
def bench_board(sizes: tuple[int, ...], quick: bool, out: Path, cache_dir: Path) -> None:
    """Measure the board in Chromium over N tasks (see docs/performance.md, "The board at scale")."""
    from taskservice.bench import board
    from taskservice.telemetry.observability import configure_logging

    configure_logging("warning")
    chosen = list(sizes) or ([100, 5_000] if quick else [100, 100_000])
    try:
        results = board.measure(chosen, cache_dir, lambda line: click.echo(line))
    except RuntimeError as error:
        raise click.ClickException(str(error)) from None
    board.write(results, out)
    click.echo(f"wrote {out}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()


@cli.command()
@click.option("--duration", default="30m", show_default=True, help="how long the load runs: 60s, 30m, 1h")
@click.option("--store", type=click.Choice(("sqlite", "postgres")), default="sqlite", show_default=True)
@click.option(
    "--postgres",
    envvar="TASKSERVICE_SOAK_POSTGRES",
    default="postgresql://postgres@127.0.0.1:5432/postgres",
    show_default=True,
    help="an administrative connection where the soak creates and drops its database (never restarted)",
)
@click.option(
    "--private-postgres",
    is_flag=True,
    help="run an own PostgreSQL cluster in a temporary folder instead, and restart it at 70% of the run",
)
@click.option("--rate", default=100.0, show_default=True, help="operations per second, all users together")
@click.option("--users", default=8, show_default=True)
@click.option("--watchers", default=200, show_default=True, help="watch streams that drop and resume")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("soak-results"),
    show_default=True,
    help="where soak.json and soak.png go",
)
def soak(
    duration: str,
    store: str,
    postgres: str,
    private_postgres: bool,
    rate: float,
    users: int,
    watchers: int,
    out_dir: Path,
) -> None:
    """Mixed load with dropping watchers and (on PostgreSQL) faults, then check that nothing was lost,
    every watcher's history is whole, memory and file descriptors stayed flat (docs/operations.md)."""
    from taskservice.bench.soak import SoakConfig
    from taskservice.bench.soak import soak as run_soak

    config = SoakConfig(
        duration_s=_duration(duration),
        store=store,
        postgres_url=postgres,
        private_postgres=private_postgres,
        rate=rate,
        users=users,
        watchers=watchers,
        out_dir=out_dir,
    )
    if not run_soak(config, click.echo)["passed"]:
        raise click.ClickException("the soak found problems (see the checks above)")
