"""What mlnb records about a run without being asked: the Python environment and hardware
(:mod:`~mlnb.capture.environment`), the git state (:mod:`~mlnb.capture.git`), on request
system metrics (:mod:`~mlnb.capture.system`), the notebook and its linearity
(:mod:`~mlnb.capture.notebook`), and the fingerprints and profiles of logged data
(:mod:`~mlnb.capture.fingerprints` over :mod:`~mlnb.capture.datahash`,
:mod:`~mlnb.capture.profile`).

The capture modules read the world and return plain data; they write nothing and never
import the store (the layers contract in pyproject.toml checks it). They import only the
standard library at module level, and are themselves imported lazily. Running them when a
run starts and storing what they return is tracking's job (:mod:`~mlnb.tracking.collect`).
"""
