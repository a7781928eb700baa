"""The generic Registry, its error messages, and the conventions every registered entry follows."""

from __future__ import annotations

import re

import pytest

import bench.catalog
from bench.registry import OPTIMIZERS, SCHEDULES, TASKS, Registry, UnknownNameError, suggest


@pytest.fixture
def widgets() -> Registry:
    return Registry("widget")


def test_register_get_and_cache(widgets: Registry) -> None:
    calls: list[str] = []

    @widgets.register("alpha")
    def alpha() -> dict:
        calls.append("alpha")
        return {"name": "alpha"}

    assert alpha() == {"name": "alpha"}  # the decorator returns the factory itself
    calls.clear()
    assert calls == [] and "alpha" in widgets and len(widgets) == 1  # registering builds nothing
    first = widgets.get("alpha")
    assert widgets.get("alpha") is first and calls == ["alpha"]  # built once, then cached


def test_add_names_items(widgets: Registry) -> None:
    widgets.add("beta", 2)
    widgets.add("alpha", 1)
    assert widgets.names() == ["alpha", "beta"]
    assert list(widgets.items()) == [("alpha", 1), ("beta", 2)]
    assert "gamma" not in widgets and 3 not in widgets


def test_double_registration_is_an_error(widgets: Registry) -> None:
    widgets.add("alpha", 1)
    with pytest.raises(ValueError, match="widget 'alpha' is registered twice"):
        widgets.add("alpha", 2)
    assert widgets.get("alpha") == 1


def test_unknown_name_message(widgets: Registry) -> None:
    widgets.add("alpha", 1)
    widgets.add("beta", 2)
    with pytest.raises(UnknownNameError) as info:
        widgets.get("alpah")
    err = info.value
    assert isinstance(err, KeyError)  # callers that catch KeyError keep working
    assert str(err) == "Unknown widget 'alpah'. Did you mean 'alpha'? Available: alpha, beta"
    assert (err.kind, err.name, err.available, err.suggestion) == (
        "widget",
        "alpah",
        ["alpha", "beta"],
        "alpha",
    )
    with pytest.raises(UnknownNameError) as info:
        widgets.get("zzzzzz")
    assert str(info.value) == "Unknown widget 'zzzzzz'. Available: alpha, beta"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("AdamW", "adamw"),  # case-insensitive exact match
        ("adamv", "adamw"),
        ("lino", "lion"),
        ("digit_cnn", "digits_cnn"),
        ("transformer", None),
        ("", None),
    ],
)
def test_suggest(name: str, expected: str | None) -> None:
    assert suggest(name, ["adamw", "lion", "sgd", "digits_cnn"]) == expected


def test_suggest_keeps_the_original_spelling() -> None:
    assert suggest("val/LOSS", ("val/loss", "Val/Error")) == "val/loss"
    assert suggest("val/error", ("val/loss", "Val/Error")) == "Val/Error"


# The project's registries, populated by bench.catalog: every entry follows the naming conventions.
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _names(registry: Registry) -> list[str]:
    bench.catalog.load()
    return registry.names()


@pytest.mark.parametrize("registry", [TASKS, OPTIMIZERS, SCHEDULES], ids=lambda r: r.kind)
def test_project_registries_are_populated(registry: Registry) -> None:
    assert len(_names(registry)) > 0


@pytest.mark.parametrize(
    ("registry", "name"),
    [(r, n) for r in (TASKS, OPTIMIZERS, SCHEDULES) for n in _names(r)],
    ids=lambda x: x if isinstance(x, str) else x.kind,
)
def test_entry_name_matches_its_key(registry: Registry, name: str) -> None:
    assert NAME.match(name), f"{registry.kind} '{name}': lower-case snake_case names only"
    entry = registry.get(name)
    assert getattr(entry, "name", name) == name
