"""Settings: each one's default, range and help in one place, the field of its config dataclass.

A setting is a dataclass field made by :func:`setting`, whose metadata holds its help text and its
range. :func:`check` validates every setting of a config (configs call it from ``__post_init__``, so
``TrainConfig(lr=-1)`` fails from Python as from the command line), and :func:`add_options` makes a
command-line option of each one, checked when the command line is parsed, with a help text that ends
with its true default. Every face (the CLI, the app, Python) reads settings from here, so a default or
a range is written once.

    @dataclass
    class Example:
        beam_size: int = setting(3, "beam size", low=1, high=50)
        def __post_init__(self): check(self)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

from .io import shorten

# The bounds a range may set, each with the words of its error message.
_BOUNDS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "low": ("at least", lambda v, x: v >= x),
    "above": ("more than", lambda v, x: v > x),
    "high": ("at most", lambda v, x: v <= x),
    "below": ("less than", lambda v, x: v < x),
}


def setting(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    below: float | None = None,
    choices: Sequence[str] | None = None,
    flag: str | None = None,
    metavar: str | None = None,
) -> Any:
    """A dataclass field with its help text and range: ``low``/``high`` inclusive, ``above``/``below`` strict,
    ``choices`` for strings; ``flag`` overrides the option's name (default ``--field-name``)."""
    limits = {k: v for k, v in (("low", low), ("high", high), ("above", above), ("below", below)) if v is not None}
    metadata = {
        "help": help,
        "limits": limits,
        "choices": tuple(choices) if choices else None,
        "flag": flag,
        "metavar": metavar,
    }
    if isinstance(default, (list, tuple)):
        return dataclasses.field(default_factory=lambda: tuple(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def settings(config_cls: type) -> list[dataclasses.Field]:
    """The fields of ``config_cls`` that are settings (made by :func:`setting`), in order."""
    return [f for f in dataclasses.fields(config_cls) if "help" in f.metadata]


def default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def kind_of(f: dataclasses.Field) -> str:
    """``bool``, ``int``, ``float``, ``tuple`` or ``str``, from the field's annotation."""
    text = str(f.type)
    for kind in ("bool", "int", "float", "tuple"):
        if text.startswith(kind):
            return kind
    return "str"


def limits_text(limits: dict[str, float]) -> str:
    return " and ".join(f"{_BOUNDS[k][0]} {v:g}" for k, v in limits.items())


def checked(name: str, value: Any, f: dataclasses.Field) -> Any:
    """``value`` if it suits setting ``f``, else ValueError (one line): a number of the right kind, finite
    and within range; one of the choices; None only where the default is None."""
    return check_value(name, value, kind_of(f), f.metadata, nullable=default_of(f) is None)


def check_value(name: str, value: Any, kind: str, meta: Mapping[str, Any], nullable: bool = False) -> Any:
    """``value`` if it is a ``kind`` (see :func:`kind_of`) within ``meta``'s limits and choices, else ValueError."""
    if value is None and nullable:
        return value
    shown = shorten(repr(value))
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, not {shown}")
    elif kind in ("int", "float"):
        integral = isinstance(value, int) and not isinstance(value, bool)
        if kind == "int" and not integral or kind == "float" and not (integral or isinstance(value, float)):
            raise ValueError(f"{name} must be {'a whole number' if kind == 'int' else 'a number'}, not {shown}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, not {shown}")
        limits = meta.get("limits", {})
        if not all(_BOUNDS[k][1](value, v) for k, v in limits.items()):
            raise ValueError(f"{name} must be {limits_text(limits)}, not {shown}")
    elif kind == "tuple":
        if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name} must be a list of strings, not {shown}")
    else:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, not {shown}")
        if meta.get("choices") and value not in meta["choices"]:
            raise ValueError(f"{name} must be one of {', '.join(meta['choices'])}, not {shown}")
    return value


def check(config: Any) -> None:
    """Validate every setting of a config dataclass (call from ``__post_init__``); ValueError, one line."""
    for f in settings(type(config)):
        value = getattr(config, f.name)
        if kind_of(f) == "tuple" and isinstance(value, list):
            value = tuple(value)
            object.__setattr__(config, f.name, value)
        checked(f.name, value, f)


def number(kind: type, **limits: float) -> Callable[[str], Any]:
    """An argparse ``type``: a finite ``kind`` (int or float) within ``limits`` (``low``, ``high``, ``above``,
    ``below``), checked as settings are, so that a bad value is a one-line error before any work starts."""
    meta = {"limits": limits}

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, not {shorten(text)!r}"
            ) from None
        try:
            return check_value("it", value, kind.__name__, meta)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("it ")) from None

    return parse


def _default_in_words(default: Any, kind: str) -> str:
    """A default as the help states it: none, off and on rather than Python's None, False and True."""
    if kind == "tuple":
        return " ".join(default) or "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, str) and (not default.isprintable() or default != default.strip()):
        return repr(default)  # a newline or a space, shown as such
    return "none" if default is None else str(default)


def boolean(text: str) -> bool:
    """An argparse type for an explicit true or false (``--share true``)."""
    if text.lower() in ("true", "yes", "1", "on"):
        return True
    if text.lower() in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {shorten(text)!r}")


def add_options(
    parser: argparse.ArgumentParser,
    config_cls: type,
    names: Sequence[str] | None = None,
    defaults: Callable[[str], str] | None = None,
) -> None:
    """One option per setting of ``config_cls`` (or of ``names`` only), its help ending with its default.

    With ``defaults``, options default to None (unset: the caller's own defaults apply, such as those that
    weights carry) and ``defaults(name)`` says in words what the default is; otherwise the option defaults to
    the setting's own default.
    """
    fields = {f.name: f for f in settings(config_cls)}
    for name in names or list(fields):
        f = fields[name]
        meta, kind, default = f.metadata, kind_of(f), default_of(f)
        flag = meta["flag"] or "--" + name.replace("_", "-")
        shown = defaults(name) if defaults else _default_in_words(default, kind)
        extra = {"dest": name, "default": None if defaults else default, "help": f"{meta['help']} (default: {shown})"}
        if meta["metavar"]:
            extra["metavar"] = meta["metavar"]
        if kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **extra)
        elif kind == "tuple":  # repeatable; given at least once, it replaces the default list
            extra.update(default=argparse.SUPPRESS, help=f"{meta['help']}; repeat for several (default: {shown})")
            parser.add_argument(
                flag,
                action="append",
                dest=name,
                metavar=meta["metavar"] or name.upper(),
                help=extra["help"],
                default=extra["default"],
            )
        elif kind in ("int", "float"):
            parser.add_argument(flag, type=number(int if kind == "int" else float, **meta["limits"]), **extra)
        else:
            parser.add_argument(flag, choices=meta["choices"], **extra)


def from_args(config_cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """A config from the options :func:`add_options` made (those given; the rest keep their defaults)."""
    given = {f.name: getattr(args, f.name) for f in settings(config_cls) if getattr(args, f.name, None) is not None}
    return config_cls(**{**given, **overrides})


# Bounds that several configs share: past them a setting is a typo, not a choice.
MAX_DIM = 16_384  # the width of any layer
MAX_LAYERS = 16  # stacked recurrent layers


def like(config_cls: type, name: str, **changes: Any) -> Any:
    """Setting ``name`` of ``config_cls`` again (its default, help and range, with ``changes`` such as another
    ``default``), for a config that sets it too: the training configs take the model's shape settings from the
    model's config, and a task's defaults from the shared run config, so each is written once."""
    f = next((f for f in settings(config_cls) if f.name == name), None)
    if f is None:
        raise KeyError(f"{config_cls.__name__} has no setting {name!r}")
    meta = f.metadata
    spec = {
        "default": default_of(f),
        "help": meta["help"],
        "choices": meta["choices"],
        "flag": meta["flag"],
        "metavar": meta["metavar"],
        **meta["limits"],
        **changes,
    }
    return setting(**spec)
