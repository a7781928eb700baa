"""An example bench plugin (docs/extending.md): the `iris_mlp` task and the `nsgd` optimizer.

tasks.py       the task's declaration (torch-free): TaskEntry, its options schema
iris.py        the task's implementation: data from data/iris.csv (inside this package), the model
optimizers.py  the optimizer's declaration (torch-free): OptimizerEntry
nsgd.py        the optimizer's implementation: a torch.optim.Optimizer
"""
