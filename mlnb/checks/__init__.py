"""Checks: verdicts about runs, all written to the ``checks`` table — metric gates
(:mod:`~mlnb.checks.gates`).
"""
