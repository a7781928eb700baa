"""Optimizers: one module per family; importing this package registers them in `OPTIMIZERS` and the
learning-rate schedules in `SCHEDULES`. Entries are built lazily, so the libraries they wrap are
imported only when an entry is first used.

    sgd.py       sgd, signum, lion, sgd_sai          adam.py    adam, adamw, nadamw, adafactor, adopt,
    matrix.py    muon, soap, shampoo, psgd_kron                 ademamix, mars, adamp, diffgrad, adalayer
    free.py      schedulefree_adamw, prodigy, dog    sophia.py  sophia
"""

from bench.optimizers import adam, free, matrix, schedules, sgd, sophia  # noqa: F401  (registration)
