"""Tasks: one module per family. `register_all()` imports them, which registers them in `TASKS`.

The package itself imports nothing heavy, so `bench.tasks.base` can be imported on its own.
"""


def register_all() -> None:
    from bench.tasks import digits, gpt, resnet, vit  # noqa: F401  (registration side effects)
