"""Inside a notebook: the ``%track`` magics (:mod:`~mlnb.notebook.magics`), the compare
widget (:mod:`~mlnb.notebook.widgets`) and live plots (:mod:`~mlnb.notebook.liveplot`). The
only importers of IPython and ipywidgets.
"""
