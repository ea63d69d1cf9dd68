"""Comparing runs: two runs (:mod:`~mlnb.comparison.diff`), several side by side
(:mod:`~mlnb.comparison.multidiff`), the runs table of the compare view without widgets
(:mod:`~mlnb.comparison.table`), its HTML (:mod:`~mlnb.comparison.html`) and figures
(:mod:`~mlnb.comparison.plots`).
"""
