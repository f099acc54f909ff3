"""Offline NLML-HPE training pipeline (not installed with the package).

Run from the repository root::

    .venv/bin/python -m training.pipeline --config training/configs/default.yaml

Stages, each a module with ``run(cfg, out_dir, inputs)`` writing an inspectable
artifact into ``<workdir>/<stage>/``: faces -> correspondence -> landmarks ->
tensor -> decompose -> manifolds -> networks -> export.
"""
