"""Inside the image: size the cluster from the machine, then run scheduler + workers.

``python -m daskbox.entrypoint`` runs limits -> SizingPlan -> processes. This package is
copied into the image with ``daskbox.contract`` only, so it imports nothing else of daskbox:
just the stdlib, psutil, dask and distributed.
"""
