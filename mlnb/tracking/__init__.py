"""Tracking: the fluent API (:mod:`~mlnb.tracking.fluent`: ``start_run``, ``log_*``, the
metric writer), what is captured when a run starts (:mod:`~mlnb.tracking.collect`), reading
runs back (:mod:`~mlnb.tracking.reading`) and scikit-learn autolog
(:mod:`~mlnb.tracking.autolog`).
"""
