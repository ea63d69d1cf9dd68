"""Interop with other trackers: runs and registered models pushed to and pulled from an
MLflow tracking server (:mod:`mlnb.interop.mlflow`), and logging to one through a local
buffer store (:mod:`mlnb.interop.buffer`). The only importer of ``mlflow``, and only
inside functions: ``import mlnb`` never loads it (``pip install 'mlnb[mlflow]'``)."""
