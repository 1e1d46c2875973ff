"""The ``rtstream`` command: run, validate, stages, inspect."""

from __future__ import annotations

import functools
import logging
import sys
from typing import NoReturn, TextIO

import click

from . import __version__, registry
from .config import load_config
from .errors import ConfigError
from .pipeline import Pipeline, build_pipeline

class Problem(click.ClickException):
    """A usage or configuration error: one line on stderr, exit status 2."""

    exit_code = 2


def _build(file: str, names: tuple[str, ...], instances: int = 1) -> list[Pipeline]:
    try:
        config = load_config(file)
        return [
            build_pipeline(spec, file=config.file, instance=k)
            for spec in config.select(names)
            for k in range(1, instances + 1)
        ]
    except ConfigError as exc:
        raise Problem(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rtstream")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="How much to log (to stderr).",
)
def main(log_level: str) -> None:
    """Stream real-time voice audio between speech services and telephony."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


pipeline_option = click.option(
    "-p", "--pipeline", "names", multiple=True, metavar="NAME", help="Only this pipeline (repeatable); all by default."
)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@pipeline_option
@click.option("--instances", type=click.IntRange(1, 100_000), default=1, show_default=True, help="Copies of each pipeline, run concurrently (one per call).")
@click.option("--duration", type=click.FloatRange(0, min_open=True), help="Stop the sources after this many seconds.")
@click.option("--grace", type=click.FloatRange(0), default=2.0, show_default=True, help="Seconds to drain after a stop before cancelling.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Also write the run report as JSON to this file.")
def run(file: str, names: tuple[str, ...], instances: int, duration: float | None, grace: float, report_path: str | None) -> NoReturn:
    """Run the pipelines of FILE and print a report.

    Ctrl-C stops the sources and lets the rest drain for the grace period; a second Ctrl-C
    cancels at once.
    """
    import trio

    from .report import format_text
    from .runner import run_pipelines

    pipelines = _build(file, names, instances)
    report_file = _open_for_writing(report_path) if report_path else None
    report = trio.run(
        functools.partial(run_pipelines, pipelines, grace=grace, stop_after=duration, handle_signals=True)
    )
    click.echo(format_text(report))
    if report_file is not None:
        with report_file:
            report_file.write(report.to_json() + "\n")
    sys.exit(1 if report.failed else 0)


def _open_for_writing(path: str) -> TextIO:
    try:
        return open(path, "w", encoding="utf-8")  # noqa: SIM115  (closed after the run)
    except OSError as exc:
        raise Problem(f"cannot write the report to {path}: {exc.strerror}") from None


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@pipeline_option
def validate(file: str, names: tuple[str, ...]) -> None:
    """Check FILE (parameters, stage order, formats) without running anything."""
    for pipeline in _build(file, names):
        chain = " -> ".join(
            f"{ref.label or ref.type}" + (f" [{fmt}]" if i < len(pipeline.formats) else "")
            for i, (ref, fmt) in enumerate(zip(pipeline.refs, [*pipeline.formats, None], strict=True))
        )
        click.echo(f"pipeline '{pipeline.name}' ok: {chain}")


@main.command()
@click.option("--klass", default="", metavar="PREFIX", help="Only stages whose klass starts with PREFIX (e.g. Filter).")
def stages(klass: str) -> None:
    """List the registered stage types."""
    found = [s for s in registry.stages() if s.klass.lower().startswith(klass.lower())]
    if not found:
        raise Problem(f"no stage has a klass starting with '{klass}'")
    width = max(len(s.name) for s in found)
    kwidth = max(len(s.klass) for s in found)
    for info in found:
        click.echo(f"{info.name:<{width}}  {info.klass:<{kwidth}}  {info.description}")


@main.command()
@click.argument("stage")
def inspect(stage: str) -> None:
    """Describe STAGE: klass, formats and every parameter."""
    try:
        info = registry.get(stage)
    except registry.UnknownStage as exc:
        raise Problem(str(exc)) from None
    cls = info.cls
    click.echo(f"{info.name} ({info.klass}, from {info.origin})")
    click.echo(f"  {info.description}")
    click.echo("")
    click.echo("Formats")
    if cls.role != "source":
        click.echo(f"  accepts:  {cls.accepts}")
    if cls.role != "sink":
        click.echo(f"  produces: {'the format it receives' if cls.produces is None else cls.produces}")
    click.echo("")
    click.echo("Parameters")
    if not info.params:
        click.echo("  (none)")
    for p in info.params:
        default = "required" if p.default is None else f"default {p.default}"
        unit = f" {p.unit}" if p.unit else ""
        click.echo(f"  {p.name} ({p.type}{unit}, {default})")
        click.echo(f"      {p.help}")
        if p.allowed:
            click.echo(f"      allowed: {p.allowed}")


def entry() -> None:
    """Console-script entry: a stray Ctrl-C outside a run exits quietly."""
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    entry()
