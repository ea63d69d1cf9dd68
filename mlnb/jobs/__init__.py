"""Jobs: notebooks run headless (:mod:`~mlnb.jobs.runner`, parameters in
:mod:`~mlnb.jobs.params`), sweeps (:mod:`~mlnb.jobs.sweeps`, grids in :mod:`~mlnb.jobs.grid`),
reproducing a run (:mod:`~mlnb.jobs.reproduce`), reports (:mod:`~mlnb.jobs.reports`) and CI
workflows (:mod:`~mlnb.jobs.workflows`).
"""
