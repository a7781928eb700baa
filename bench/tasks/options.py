"""Helpers for task option schemas (`bench.tasks.base.TaskOptions`): variants as data.

A family declares one schema (fields, bounds, rules); its variants differ only in defaults, so each
entry gets the family schema with its own defaults instead of a hand-written subclass:

    C4GptSmallOptions = with_defaults(C4Options, "C4GptSmallOptions", n_layer=6, n_embd=384)

The variant keeps every field's type, bounds, description and the schema's validators; its defaults
are checked by the schema when the variant is declared, so a bad default fails at import.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import create_model
from pydantic.fields import FieldInfo

from bench.tasks.base import TaskOptions

Schema = TypeVar("Schema", bound=TaskOptions)


def with_defaults(schema: type[Schema], name: str, **defaults: Any) -> type[Schema]:
    """`schema` with new defaults for some of its fields (a subclass named `name`)."""
    unknown = sorted(set(defaults) - set(schema.model_fields))
    if unknown:
        raise TypeError(
            f"{schema.__name__} has no field(s) {unknown}; fields: {', '.join(schema.model_fields)}"
        )
    fields: dict[str, Any] = {
        key: (
            schema.model_fields[key].annotation,
            FieldInfo.merge_field_infos(schema.model_fields[key], default=value, default_factory=None),
        )
        for key, value in defaults.items()
    }
    variant = create_model(
        name, __base__=schema, __module__=schema.__module__, __doc__=schema.__doc__, **fields
    )
    variant.model_validate(variant().model_dump())  # pydantic does not check defaults: do it once, here
    return variant
