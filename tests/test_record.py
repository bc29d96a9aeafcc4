"""agent.record behaves like the dataclasses it replaced on the agent's start-up path."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.record import FrozenError, factory, fields, record


@record(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: list[str] = factory(list)
    KIND: ClassVar[str] = "point"


@dataclasses.dataclass(frozen=True)
class DPoint:
    x: int
    y: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)
    KIND: ClassVar[str] = "point"


@record
class Box:
    content: str
    size: int = 1


def test_construction_defaults_and_factories() -> None:
    assert fields(Point) == ("x", "y", "tags")
    p, q = Point(1), Point(x=1)
    assert (p.x, p.y, p.tags) == (1, 0, [])
    assert p.tags is not q.tags  # a fresh list per instance
    assert Point(1, 2, ["a"]).tags == ["a"]
    assert Point.KIND == "point"


@pytest.mark.parametrize(("args", "kwargs"), [
    ((), {}), ((1, 2, [], 4), {}), ((1,), {"x": 2}), ((1,), {"z": 2}), ((1,), {"KIND": "x"}),
])
def test_bad_arguments_raise_type_error_like_dataclasses(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        DPoint(*args, **kwargs)
    with pytest.raises(TypeError):
        Point(*args, **kwargs)


def test_frozen_refuses_assignment_and_hashes_by_value() -> None:
    p = Point(1, 2)
    with pytest.raises(FrozenError):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y
    assert hash(Point(1, 2, ())) == hash(Point(1, 2, ()))  # type: ignore[arg-type]  # a hashable tuple for t
    b = Box("a")
    b.size = 3
    assert b.size == 3
    with pytest.raises(TypeError):
        hash(b)


@given(st.integers(), st.integers(), st.lists(st.text(max_size=3), max_size=3),
       st.integers(), st.integers(), st.lists(st.text(max_size=3), max_size=3))
def test_equality_and_repr_match_dataclasses(x1: int, y1: int, t1: list[str], x2: int, y2: int,
                                             t2: list[str]) -> None:
    assert (Point(x1, y1, t1) == Point(x2, y2, t2)) == (DPoint(x1, y1, t1) == DPoint(x2, y2, t2))
    assert repr(Point(x1, y1, t1)) == repr(DPoint(x1, y1, t1)).replace("DPoint", "Point")
    assert Point(x1) != DPoint(x1)  # type: ignore[comparison-overlap]  # the point: another class is never equal
    assert Point(x1) != Box("a")  # type: ignore[comparison-overlap]  # (the checker knows; the runtime must too)


def test_a_field_without_default_after_one_with_default_is_refused() -> None:
    with pytest.raises(TypeError, match="follows one with a default"):
        @record
        class Bad:
            a: int = 0
            b: int  # type: ignore[misc]  # the mistake under test, which the checker also sees


def test_a_record_subclass_extends_the_base_fields_like_a_dataclass() -> None:
    @record(frozen=True)
    class Point3(Point):
        z: int = 7

    @dataclasses.dataclass(frozen=True)
    class DPoint3(DPoint):
        z: int = 7

    assert fields(Point3) == ("x", "y", "tags", "z") == tuple(f.name for f in dataclasses.fields(DPoint3))
    p = Point3(1, 2, ["t"], 3)
    assert (p.x, p.y, p.tags, p.z) == (1, 2, ["t"], 3) and Point3(1).z == 7 and Point3(1).tags == []
    assert repr(p) == repr(DPoint3(1, 2, ["t"], 3)).replace("DPoint3", "Point3")
    assert fields(Point) == ("x", "y", "tags")  # the base is unchanged
