"""What mlnb records about a run without being asked: the Python environment and hardware
(:mod:`~mlnb.capture.environment`), the git state (:mod:`~mlnb.capture.git`) and, on
request, system metrics (:mod:`~mlnb.capture.system`).

The capture modules are pure: they return plain dicts and write nothing. They import only
the standard library at module level, and are themselves imported lazily.
"""
