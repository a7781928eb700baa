"""The generic Registry: entries that carry their names, lazy references, plugins through entry points,
error messages, and the conventions every registered entry follows."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.catalog import OPTIMIZERS, SCHEDULES, TASKS
from bench.registry import Lazy, Registry, UnknownNameError, did_you_mean, load_import_path, suggest


@dataclass(frozen=True)
class Widget:
    name: str
    size: int = 0


@pytest.fixture
def widgets() -> Registry:
    return Registry("widget", entries=[Widget("beta", 2), Widget("alpha", 1)])


def test_entries_are_registered_under_their_own_names(widgets: Registry) -> None:
    assert widgets.names() == ["alpha", "beta"]
    assert [n for n, _ in widgets.items()] == ["alpha", "beta"]
    assert widgets.get("alpha") == Widget("alpha", 1)
    assert "alpha" in widgets and "gamma" not in widgets and 3 not in widgets
    assert widgets.origin("alpha") == "bench" and len(widgets) == 2


def test_double_registration_is_an_error(widgets: Registry) -> None:
    with pytest.raises(ValueError, match="widget 'alpha' is registered twice"):
        widgets.add(Widget("alpha", 9))
    assert widgets.get("alpha").size == 1


def test_unknown_name_message(widgets: Registry) -> None:
    with pytest.raises(UnknownNameError) as info:
        widgets.get("alpah")
    err = info.value
    assert isinstance(err, KeyError)  # callers that catch KeyError keep working
    assert str(err) == "Unknown widget 'alpah'. Did you mean 'alpha'? Available: alpha, beta"
    assert (err.kind, err.name, err.available) == ("widget", "alpah", ["alpha", "beta"])
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
    assert did_you_mean(name, ["adamw", "lion", "sgd", "digits_cnn"]) == (
        f" Did you mean '{expected}'?" if expected else ""
    )


def test_suggest_keeps_the_original_spelling() -> None:
    assert suggest("val/LOSS", ("val/loss", "Val/Error")) == "val/loss"
    assert suggest("val/error", ("val/loss", "Val/Error")) == "Val/Error"


def test_lazy_imports_on_first_call_and_binds_keywords() -> None:
    ref = Lazy("json:dumps", sort_keys=True)
    assert ref._obj is None  # nothing imported yet
    assert ref({"b": 1, "a": 2}) == '{"a": 2, "b": 1}'
    assert ref == Lazy("json:dumps", sort_keys=True) and ref.__name__ == "dumps"
    with pytest.raises(ValueError, match="expected 'package.module:name'"):
        Lazy("json.dumps")


def test_load_import_path_names_the_path_in_errors() -> None:
    assert load_import_path("os.path:join", "thing") is __import__("os").path.join
    with pytest.raises(
        ImportError, match="thing 'no_such_mod_xyz:X': cannot import module 'no_such_mod_xyz'"
    ):
        load_import_path("no_such_mod_xyz:X", "thing")
    with pytest.raises(AttributeError, match=r"'os.path' has no attribute 'jion'. Did you mean 'join'\?"):
        load_import_path("os.path:jion", "thing")


# --------------------------------------------------------------------------------------------------
# Plugins: a real installed distribution (a dist-info folder on sys.path) with entry points.
# --------------------------------------------------------------------------------------------------

PLUGIN = """
from dataclasses import dataclass

@dataclass(frozen=True)
class Widget:
    name: str
    size: int = 0

ONE = Widget("gamma", 3)
MANY = [Widget("delta", 4), Widget("epsilon", 5)]

def factory():
    return Widget("zeta", 6)
"""


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "widget_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "widget_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: widget-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[bench.widgets]\none = widget_plugin:ONE\nmany = widget_plugin:MANY\nmade = widget_plugin:factory\n"
        "broken = widget_plugin_missing:THING\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_plugins_add_entries_and_a_broken_one_is_named(installed_plugin: Path) -> None:
    registry = Registry("widget", group="bench.widgets", entries=[Widget("alpha", 1)])
    assert registry.get("alpha").size == 1  # a built-in name loads no plugin
    assert registry._plugins_loaded is False
    assert registry.get("epsilon").size == 5
    assert registry.names() == ["alpha", "delta", "epsilon", "gamma", "zeta"]
    assert registry.origin("gamma") == "plugin widget-plugin (widget_plugin:ONE)"
    assert registry.origin("alpha") == "bench"
    assert "broken = widget_plugin_missing:THING" in registry.plugin_errors
    with pytest.raises(
        UnknownNameError, match=r"plugins that failed to load: broken = widget_plugin_missing:THING"
    ):
        registry.get("omega")
    sys.modules.pop("widget_plugin", None)


# --------------------------------------------------------------------------------------------------
# The project's registries: every entry follows the naming conventions.
# --------------------------------------------------------------------------------------------------

NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@pytest.mark.parametrize("registry", [TASKS, OPTIMIZERS, SCHEDULES], ids=lambda r: r.kind)
def test_project_registries_are_populated_and_named_by_convention(registry: Registry) -> None:
    names = registry.names()
    assert names
    for name in names:
        assert NAME.match(name), f"{registry.kind} '{name}': lower-case snake_case names only"
        assert registry.get(name).name == name
