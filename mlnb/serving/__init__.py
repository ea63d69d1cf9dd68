"""The prediction service: ``mlnb serve`` (docs/serving.md). Importing this package loads
nothing; Starlette and uvicorn load in :mod:`mlnb.serving.app` and
:mod:`mlnb.serving.server`."""
