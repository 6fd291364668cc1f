"""Inside the image: size the cluster from the machine, then run scheduler + workers.

``python -m daskbox.entrypoint`` runs limits -> SizingPlan -> processes. This package is
copied alone into the image, so it imports only the stdlib, psutil, dask and distributed.
"""
