"""bench's own checks over this plugin's entries: pytest collects the two classes (needs bench's
`dev` extra for pytest). Run with `pytest examples/plugin/tests` after `pip install ./examples/plugin`."""

from bench.catalog import OPTIMIZERS, TASKS
from bench.testing import OptimizerContract, TaskContract, plugin_entries


class TestOptimizers(OptimizerContract):
    entries = plugin_entries(OPTIMIZERS, "bench-example")


class TestTasks(TaskContract):
    entries = plugin_entries(TASKS, "bench-example")
