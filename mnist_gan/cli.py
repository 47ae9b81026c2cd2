"""The command line's plumbing: logging, option checks, and errors turned into one clear line and an exit code.
The commands themselves are in __main__.py."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from . import signals
from .config import CHOICES, LIMITS, NOT_FLAGS, Config
from .datasets import DATASETS, format_value, recipe_values
from .errors import ConfigError, MnistGanError, OutputError, TrainingInterrupted
from .files import check_output

console = Console(stderr=True)  # progress, logs and errors; results go to stdout


def setup_logging(ctx: typer.Context) -> None:
    """The library logs through `logging` (module loggers under mnist_gan); for each command the CLI shows them
    with one handler: rich on a terminal, plain whole lines otherwise (a log file or CI keeps lines unwrapped)."""
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("mnist_gan")
    logger.setLevel(logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING)  # torchrun: rank 0 tells
    logger.addHandler(handler)
    ctx.call_on_close(lambda: logger.removeHandler(handler))


def choice(options: tuple[str, ...]):
    def check(value: str) -> str:
        if value not in options:
            raise typer.BadParameter(f"{value!r} is not one of: {', '.join(options)}")
        return value

    return check


def output_file(*suffixes: str):
    """A callback that checks an output path before any work starts (see files.check_output)."""

    def check(value: Optional[Path]) -> Optional[Path]:
        if value is not None:
            try:
                check_output(value, suffixes)
            except OutputError as error:
                raise typer.BadParameter(str(error)) from None
        return value

    return check


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """One clear line and a non-zero exit for every error the user can cause; never a traceback.

    SIGTERM outside training's own handling (while loading, say) exits with 143, as Ctrl-C does with 130.
    Once stopped by a signal, repeats are ignored: the process is exiting with its checkpoint saved, and
    Python's shutdown would otherwise restore the default action and die of the repeat.
    """
    stopping = False
    try:
        with signals.handled(signals.terminate, (signal.SIGTERM,)):
            try:
                yield
            except MnistGanError as error:
                stopping = isinstance(error, TrainingInterrupted)
                show_error(error)
                raise typer.Exit(error.exit_code) from None
            except KeyboardInterrupt:
                console.print("[bold red]interrupted[/]")
                raise typer.Exit(130) from None
            except SystemExit as signalled:  # from signals.terminate
                stopping = True
                if error := signals.error_in_flight(signalled, MnistGanError):  # torchrun: a peer's error, then SIGTERM
                    show_error(error)
                raise
    finally:
        if stopping:
            signals.ignore_from_now_on()


def show_error(error: MnistGanError) -> None:
    """The process's last words, which no signal may cut short: under torchrun the SIGTERM that follows a dead
    peer lands while the survivor is saying why it stops (rich's first print can take milliseconds)."""
    label = "stopped" if isinstance(error, TrainingInterrupted) else "error"
    if getattr(error, "field", None):
        label += f": --{error.field.replace('_', '-')}"
    with signals.ignored():  # the process is leaving anyway, with this error's exit code
        console.print(
            f"[bold red]{label}:[/] {escape(str(error))}", highlight=False, soft_wrap=True
        )  # unwrapped: commands in it can be pasted; escaped: a path or a library's message may hold [brackets]


def was_given(ctx: typer.Context, name: str) -> bool:
    """Whether the user typed an option. A machine-wide MNIST_GAN_DATA_DIR is a default: a resumed run keeps its
    own data folder unless --data-dir is given."""
    return ctx.get_parameter_source(name).name == "COMMANDLINE"


@contextlib.contextmanager
def distributed_run() -> Iterator[None]:
    """Under torchrun, leave the process group however training ends."""
    from . import distributed

    try:
        yield
    finally:
        distributed.stop()


def rich_text(renderable) -> str:
    """A rich table as text for standard output (wide enough not to wrap the numbers)."""
    capture = Console(width=200, record=True, file=io.StringIO())
    capture.print(renderable)
    return capture.export_text()


@contextlib.contextmanager
def flags_renamed(names: dict[str, str]) -> Iterator[None]:
    """The library names its arguments in errors; where a command feeds one from a flag of another name, the
    error names the flag the user typed."""
    try:
        yield
    except ConfigError as error:
        error.field = names.get(error.field, error.field)
        raise


def class_list(label: Optional[int], labels: Optional[str]) -> Optional[list[int]]:
    """--label 7 or --labels 0,3,7 as a list of classes; None when neither is given."""
    if label is not None and labels is not None:
        raise ConfigError("give --label or --labels, not both", "labels")
    if labels is None:
        return None if label is None else [label]
    return int_list(labels, "labels")


def int_list(text: str, flag: str) -> list[int]:
    """0,3,7 as [0, 3, 7]: whole numbers from 0 to 2**31 - 1 (seeds and classes alike)."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"expected whole numbers separated by commas, like 0,3,7; got {text!r}", flag) from None
    low, high = LIMITS["seed"]
    outside = [value for value in values if not low <= value <= high]
    if outside:
        raise ConfigError(f"{outside[0]} is out of range: each value must be from {low} to {high:,}", flag)
    return values


# The defaults --help shows: the default dataset's (MNIST's) recipe, before the dataset's sizes are filled in.
MAIN_DEFAULTS = {**{field.name: field.default for field in Config.__dataclass_fields__.values()},
                 **DATASETS[Config.dataset].recipe}  # fmt: skip


def option_help(name: str, text: str) -> str:
    """A field's help, with what other tables say of it: its choices, the recipes that set it, its range."""
    notes = []
    if name in CHOICES:
        notes.append(f"one of: {', '.join(CHOICES[name])}")
    recipes = recipe_values(name)
    unset = [dataset for dataset, spec in DATASETS.items() if name not in spec.recipe]
    if name in DATASETS[Config.dataset].recipe and unset:  # the default shown is MNIST's: say what the rest train with
        recipes.setdefault(format_value(getattr(Config, name)), []).extend(unset)
    if recipes and len(recipes) + (name not in DATASETS[Config.dataset].recipe) > 1:
        notes.append("; ".join(f"{', '.join(names)}: {value}" for value, names in recipes.items()))
    if name in LIMITS:
        notes.append(f"{LIMITS[name][0]:,} to {LIMITS[name][1]:,}")
    if name in ("img_size", "channels"):
        notes.append(", ".join(f"{dataset} {getattr(spec, 'size' if name == 'img_size' else 'channels')}"
                               for dataset, spec in DATASETS.items()))  # fmt: skip
    return text + (f" ({'; '.join(notes)})" if notes else "")


def main_parameters() -> list[inspect.Parameter]:
    """main's parameters: the context, --resume, and one option per Config field, built from the field."""
    parameters = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)]
    resume_help = (
        "Continue --run-dir (default: the most recently modified run under runs/) from its newest valid checkpoint."
    )
    parameters.append(inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, default=False,
                                        annotation=Annotated[bool, typer.Option("--resume", help=resume_help)]))  # fmt: skip
    for field in Config.__dataclass_fields__.values():
        if field.name in NOT_FLAGS:
            continue
        metadata = dict(field.metadata)
        help_text = option_help(field.name, metadata.pop("help"))
        show_default = "1/9" if field.name == "ema_span" else True
        option = typer.Option(help=help_text, show_default=show_default, **metadata)
        annotation = Annotated[{"str": str, "int": int, "float": float, "bool": bool}[field.type], option]
        parameters.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY,
                                            default=MAIN_DEFAULTS[field.name], annotation=annotation))  # fmt: skip
    return parameters
