"""Command-line options: the one parser every `tagfold` command builds, and numeric ranges.

- `parser(prog, description)` shows every option's default and range in `--help`, requires a
  help text for every argument, and reports a bad option as one line (exit code 2).
- `Range` is the one place a numeric option is checked against its documented range: used as
  an argparse `type`, the error names the option, the value and the range; `Range.check` does
  the same for values that arrive without argparse.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from tagfold.pipeline.errors import EXIT_USAGE, UsageError


@dataclass(frozen=True)
class Range:
    """An int or float option's valid range; `open_lo`/`open_hi` exclude the bound itself."""

    kind: type = float
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    open_hi: bool = False

    def __str__(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        # integer bounds in full ('4294967295', not '4.29497e+09')
        lo, hi = ((None if v is None else f"{int(v)}" if self.kind is int else f"{v:g}") for v in (self.lo, self.hi))
        if lo is not None and hi is not None:
            return f"{what} in {'(' if self.open_lo else '['}{lo}, {hi}{')' if self.open_hi else ']'}"
        if lo is not None:
            return f"{what} {'>' if self.open_lo else '>='} {lo}"
        if hi is not None:
            return f"{what} {'<' if self.open_hi else '<='} {hi}"
        return what

    def contains(self, value) -> bool:
        if self.kind is float and not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.open_lo else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.open_hi else value > self.hi))

    def __call__(self, text: str):
        """argparse `type`: parse and check, so a bad value never reaches a command."""
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self}, got {text!r}") from None
        if not self.contains(value):
            raise argparse.ArgumentTypeError(f"expected {self}, got {text}")
        return value

    def check(self, value, name: str):
        """The same test for a value from a config or another caller; UsageError names `name`."""
        number = isinstance(value, int) if self.kind is int else isinstance(value, (int, float))
        if isinstance(value, bool) or not number or not self.contains(value):
            raise UsageError(f"{name}: expected {self}, got {value!r}")
        return value


# The ranges options share (each option's help says what it means).
COUNT = Range(int, lo=1)                        # epochs, batch sizes, workers, chunks, pages, lengths
COUNT_OR_ZERO = Range(int, lo=0)                # 0 = off / all (the help says which)
SEED = Range(int, lo=0, hi=2**32 - 1)
POSITIVE = Range(float, lo=0, open_lo=True)     # seconds, learning rates, widths
NON_NEGATIVE = Range(float, lo=0)               # weight decay, gradient clip (0 = off)
SCORE_LEVEL = Range(float, lo=0, hi=1, open_lo=True, open_hi=True)   # Jaro-Winkler thresholds
WIDTH = Range(float, lo=0, hi=4, open_lo=True)  # model channel multiplier (training.models.build's range)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Module docstrings keep their layout; every option shows its default and its range."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        extra = []
        default = action.default
        if action.option_strings and default not in (None, False, "", argparse.SUPPRESS) \
                and "default" not in text and not isinstance(action, argparse._HelpAction):
            extra.append("default: %(default)s")
        if isinstance(action.type, Range) and str(action.type) not in text:
            extra.append(str(action.type))
        return f"{text} ({'; '.join(extra)})" if extra else text


class Parser(argparse.ArgumentParser):
    """argparse with the house rules: help text required, one-line errors, exit code 2."""

    def __init__(self, prog: str, description: str | None = None, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(prog=prog, description=description, **kwargs)

    def add_argument(self, *args, **kwargs):
        if not kwargs.get("help") and kwargs.get("action") not in ("help", "version"):
            # a programming error, caught by the test that runs every command's --help
            raise TypeError(f"{self.prog}: option {args[0]} needs a help text")
        return super().add_argument(*args, **kwargs)

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parser(prog: str, description: str | None = None, **kwargs) -> Parser:
    """The parser for `tagfold COMMAND`; `prog` is 'tagfold COMMAND'."""
    return Parser(prog, description, **kwargs)

