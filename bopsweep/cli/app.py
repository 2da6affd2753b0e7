"""The ``bopsweep`` Typer application and what every command shares: errors and output.

Exit codes: 0 done, 1 the run failed (e.g. diverged, failed trials), 2 bad input, 130 Ctrl-C
(resumable). Bad input is one line on stderr, never a traceback.

``bopsweep --help`` is plain text, so it needs no Rich (~0.1 s to import), and lists the commands
from their docstrings without building them: a command is built (Typer reads its options) when
it runs or shows its own ``--help``, which draws its options in Rich panels (see
:mod:`~bopsweep.cli.options`).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from functools import wraps
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from bopsweep.cli.options import in_panel
from bopsweep.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])

# the commands, registered on a Typer of their own: Typer builds all of an app's commands at
# every start, and _Built only the one that runs
_commands = typer.Typer()


class _Built(Mapping[str, Any]):
    """The commands by name, each built by Typer when first looked up: building all of them
    (Typer reading their ~300 options) was a quarter of ``bopsweep --help``'s work (start-up
    time)."""

    def __init__(self) -> None:
        self.infos = {
            info.name or typer.main.get_command_name(info.callback.__name__): info  # type: ignore[union-attr]
            for info in _commands.registered_commands
        }
        self.built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self.built:
            self.built[name] = typer.main.get_command_from_info(
                self.infos[name],
                pretty_exceptions_short=app.pretty_exceptions_short,
                rich_markup_mode=app.rich_markup_mode,
            )
        return self.built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.infos)

    def __len__(self) -> int:
        return len(self.infos)

    def short_help(self, name: str, limit: int) -> str:
        """What ``bopsweep --help`` says of a command: its help's first sentence, as the command
        itself would say it, without building it."""
        info = self.infos[name]
        help = inspect.cleandoc(info.help) if info.help else inspect.getdoc(info.callback)
        listed = Command(name=name, help=help, short_help=info.short_help)
        return listed.get_short_help_str(limit)


class _Group(TyperGroup):
    """The app: its commands built on demand (:class:`_Built`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: _Built = _Built()  # type: ignore[assignment]

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        names = [name for name in self.list_commands(ctx) if not self.commands.infos[name].hidden]
        limit = formatter.width - 6 - max(map(len, names))  # Click's own spacing
        with formatter.section("Commands"):
            formatter.write_dl([(name, self.commands.short_help(name, limit)) for name in names])


app = typer.Typer(
    cls=_Group,
    help="Hyperparameter ablation studies of Bop and Bop2ndOrder on BinaryNet / CIFAR-10.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from bopsweep import __version__

        typer.echo(f"bopsweep {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    """Hyperparameter ablation studies of Bop and Bop2ndOrder on BinaryNet / CIFAR-10."""


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"bopsweep: error: {message}", err=True)
    return typer.Exit(code)


def user_errors(command: F) -> F:
    """Bad input → one line on stderr and exit 2. Never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as e:
            raise fail(str(e)) from None

    return wrapper  # type: ignore[return-value]


def command(
    name: str | None = None, *, panel: str | None = None, **settings: Any
) -> Callable[[F], F]:
    """Register a command of the app: bad input as one line (:class:`Command`,
    :func:`user_errors`), its own options that name no ``--help`` panel in ``panel``, its
    annotations evaluated here once.

    Typer evaluates a command's annotations twice, and a string annotation (``from __future__
    import annotations``) is compiled at each evaluation: for every command at every start-up,
    ``--help`` included. Handed evaluated ones, it compiles nothing.
    """

    def register(function: F) -> F:
        signature = inspect.signature(function, eval_str=True)
        if panel is not None:
            signature = signature.replace(
                parameters=[
                    p.replace(annotation=in_panel(p.annotation, panel))
                    for p in signature.parameters.values()
                ]
            )
        wrapper = user_errors(function)
        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        wrapper.__annotations__ = {
            p.name: p.annotation
            for p in signature.parameters.values()
            if p.annotation is not p.empty
        }
        return _commands.command(name, cls=Command, **settings)(wrapper)

    return register


def console() -> Any:
    """A rich console; wide when writing to a file or pipe, so log lines do not wrap."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


if TYPE_CHECKING:
    # what the installed Typer's Command.parse_args takes and raises
    from typer._click import Context as ClickContext
    from typer._click.exceptions import UsageError
else:
    # Click's UsageError, whether Typer vendors Click (0.2x) or depends on it (older releases)
    UsageError: type[Exception] = next(
        c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
    )


class _OneLineUsageError(UsageError):
    def show(self, file: Any = None) -> None:
        typer.echo(f"bopsweep: error: {self.format_message()}", err=True)


class Command(TyperCommand):
    """A command whose usage errors (a wrong type, a choice not offered, a missing option) are
    one line and exit code 2, like every other bad input, and whose ``--help`` shows its options
    in their panels (Rich markup: the app's is off, so that its own ``--help`` and the errors
    stay plain)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "rich_markup_mode": "rich"})

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except UsageError as e:
            # Typer 0.2x words a bad choice "Value error, …": the first two words add nothing
            message = e.format_message().replace("Value error, ", "")
            raise _OneLineUsageError(message, ctx) from None
