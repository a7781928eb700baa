"""Task declarations: one module per family (`digits`, `gpt`, `resnet`, `vit`), each with `ENTRIES`.

A declaration is data (`bench.tasks.base.TaskEntry`): the options schema, budgets, target, FLOPs and
the `build` function named by import path, so nothing here imports torch, timm, datasets or tiktoken.
The implementations (models, data, `Task` classes) are `bench.workloads`; `bench.catalog` builds the
task registry from the `ENTRIES` tuples.

    image_data.py   the options the image tasks share (where the images come from)
    options.py      `with_defaults`: a variant's schema is the family's with its own defaults
"""
