"""The model registry: models, versions, aliases with their history, lineage."""
