"""Plain records for the agent's start-up path, without ``dataclasses``.

``@dataclass`` writes each class's methods as source text and compiles it
with ``exec`` when the class is defined (1-4 ms per class here: ~18 ms for
the eleven on the way to READY), and importing ``dataclasses`` pulls in
``inspect``, ``ast`` and ``dis`` (~12 ms). Under emulation in the guest that
is over a second of a boot. The agent's records need little: keyword or
positional construction with defaults, equality, a readable repr, and
immutability for most. ``record`` gives exactly that with shared, pre-written
methods, so defining a class costs a dict lookup per field.

Semantics follow dataclasses where they overlap (field order from the class
annotations, defaults from class attributes, ``factory(...)`` for mutable
defaults, ``frozen`` instances refuse assignment, frozen records hash by
value, mutable ones are unhashable); tests/test_record.py holds them to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["FrozenError", "factory", "fields", "record"]

T = TypeVar("T")


class _Factory:
    """A default made fresh for every instance (``dataclasses.field(default_factory=...)``)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


class FrozenError(AttributeError):
    """Assignment to a frozen record."""


_MISSING = object()


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    cls = type(self)
    names: tuple[str, ...] = cls.__record_fields__
    if len(args) > len(names):
        raise TypeError(f"{cls.__name__}() takes {len(names)} positional arguments but {len(args)} were given")
    values = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key not in names:
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {key!r}")
        if key in values:
            raise TypeError(f"{cls.__name__}() got multiple values for argument {key!r}")
        values[key] = value
    setter = object.__setattr__
    for name in names:
        value = values.get(name, _MISSING)
        if value is _MISSING:
            default = cls.__record_defaults__.get(name, _MISSING)
            if default is _MISSING:
                raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
            value = default.make() if isinstance(default, _Factory) else default
        setter(self, name, value)


def _values(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, name) for name in self.__record_fields__)


def _eq(self: Any, other: object) -> Any:  # bool, or NotImplemented
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _repr(self: Any) -> str:
    inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__record_fields__)
    return f"{type(self).__qualname__}({inner})"


def _hash(self: Any) -> int:
    return hash(_values(self))


def _refuse_set(self: Any, name: str, value: Any) -> None:
    raise FrozenError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")


def _refuse_del(self: Any, name: str) -> None:
    raise FrozenError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")


def _record(cls: type[T] | None = None, *, frozen: bool = False) -> Any:
    """Class decorator: fields are the class's own annotations, in order (``ClassVar`` ones excluded)."""

    def wrap(cls: type[T]) -> type[T]:
        annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 - inspect is what this avoids
        own = tuple(n for n, a in annotations.items() if not str(a).startswith(("ClassVar", "typing.ClassVar")))
        # A record subclassing a record: the base's fields first, then new ones (as dataclasses order them).
        inherited: tuple[str, ...] = getattr(cls, "__record_fields__", ())
        names = inherited + tuple(n for n in own if n not in inherited)
        defaults: dict[str, Any] = dict(getattr(cls, "__record_defaults__", {}))
        seen_default = False
        for name in names:
            if name in own and name in cls.__dict__:
                defaults[name] = cls.__dict__[name]
                if isinstance(defaults[name], _Factory):
                    delattr(cls, name)  # the class attribute would otherwise shadow nothing useful
            if name in defaults:
                seen_default = True
            elif seen_default:
                raise TypeError(f"{cls.__name__}: field {name!r} without a default follows one with a default")
        # setattr: the type checker rightly refuses assigning methods to a class; here that is the point
        members: dict[str, Any] = {"__record_fields__": names, "__record_defaults__": defaults,
                                   "__init__": _init, "__eq__": _eq}
        if "__repr__" not in cls.__dict__:
            members["__repr__"] = _repr
        if frozen:
            members.update(__setattr__=_refuse_set, __delattr__=_refuse_del, __hash__=_hash)
        else:
            members["__hash__"] = None
        for key, value in members.items():
            setattr(cls, key, value)
        return cls

    return wrap if cls is None else wrap(cls)


def fields(obj: Any) -> tuple[str, ...]:
    """A record's field names, in order."""
    names: tuple[str, ...] = obj.__record_fields__
    return names


if TYPE_CHECKING:
    # The type checker reads records as the dataclasses whose semantics they follow, and a factory call as
    # the value it makes; the implementations above are what runs (and are checked themselves).
    from dataclasses import dataclass as record

    def factory(make: Callable[[], T]) -> T: ...
else:
    record = _record
    factory = _Factory
