"""Command-line flags generated from a settings model: one flag per field, with the field's type, choices,
description and default. A default lives in the model only: a flag not given is not passed, so the model's own
default applies, and its validation (ranges, unknown values) speaks for the CLI too.

argparse over the pydantic models rather than pydantic-settings' CLI source or typer: the CLI's other commands
are argparse already, the CLI module must stay light to import (no typer/rich at start-up), and a generated flag
is a plain `add_argument` that `--help` shows like every other."""

import argparse
import types
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import BaseModel


def add_flags(
    parser: argparse.ArgumentParser, model: type[BaseModel], skip: tuple[str, ...] = (), names: dict | None = None
) -> None:
    """`--field-name` for each field of `model` (except `skip`; `names` gives a field another flag, such as
    `--data` for data_path); booleans get `--x / --no-x`; a field without a default is a required flag."""
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        kind, choices = flag_type(field.annotation)
        default = field.get_default(call_default_factory=True)
        shown = "none" if default in (None, "") else default
        help_text = f"{field.description or ''} (default: {shown})".replace("%", "%%")
        flag = (names or {}).get(name, "--" + name.replace("_", "-"))
        common = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif field.is_required():
            parser.add_argument(
                flag, type=kind, choices=choices, required=True, **{**common, "help": field.description}
            )
        else:
            parser.add_argument(flag, type=kind, choices=choices, **common)


def flag_values(model: type[BaseModel], args: argparse.Namespace) -> dict:
    """The fields of `model` given on the command line (the rest keep the model's defaults)."""
    return {name: getattr(args, name) for name in model.model_fields if hasattr(args, name)}


def flag_type(annotation) -> tuple[type, list | None]:
    """The argparse type (and choices) of a field: str, int, float, bool, a Literal, or an optional of one."""
    if get_origin(annotation) is Annotated:
        return flag_type(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        (inner,) = [arg for arg in get_args(annotation) if arg is not type(None)]
        return flag_type(inner)
    if get_origin(annotation) is Literal:
        choices = list(get_args(annotation))
        return type(choices[0]), choices
    if annotation in (str, int, float, bool):
        return annotation, None
    raise TypeError(f"no command-line flag for a field of type {annotation!r}: skip it or give it a simple type")
