"""Optimizers: one declaration module per family, each listing its entries in `ENTRIES` (torch-free
at import; `bench.catalog` gathers them into `OPTIMIZERS`), plus the shared machinery.

    sgd.py         sgd, signum, lion, sgd_sai
    adam.py        adam, adamw, nadamw, adafactor, adopt, ademamix, mars, adamp, diffgrad, adalayer,
                   laprop, cautious_adamw, stableadamw
    matrix.py      muon, adamuon, normuon, scion, soap, soap_heavyball, shampoo, psgd_kron, kron, splus
    lowrank.py     galore, apollo, adam_mini
    rotational.py  rotational_adamw, rotational_sgd, rotational_lion (implemented in rv.py)
    free.py        schedulefree_adamw, prodigy, dog
    sophia.py      sophia
    sam.py         sam (flag `closure`)

    base.py          the entry contract (`OptimizerEntry`, `grouped`, `lazy`)
    param_groups.py  the weight-decay filter and the Muon split, from declared parameter roles
    schedules.py     learning-rate schedules (`ENTRIES` of `Schedule`, gathered into `SCHEDULES`)
    scaling.py       lr transfer across batch sizes        custom.py   user optimizers by import path
    adalayer.py      bench's own Adalayer implementation
    rv.py            bench's own rotational variants (Kosson et al. 2024)
"""
