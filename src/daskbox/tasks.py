"""daskbox's invoke collection. A user's two-line ``tasks.py``::

    from daskbox.tasks import ns
    ns.configure({"daskbox": {}})  # optional: task defaults over [tool.daskbox]

Each component owns its tasks; this module only assembles them.
"""

from __future__ import annotations

from invoke.collection import Collection
from invoke.program import Program

from daskbox import __version__
from daskbox.client.tasks import check, dashboard
from daskbox.gcloud.tasks import launch, scale, status, teardown
from daskbox.images.tasks import build, cache, dockerfile, push

ns = Collection(build, push, dockerfile, cache, launch, scale, teardown, status, check, dashboard)

# `daskbox build push` works without a tasks.py too.
program = Program(namespace=ns, version=__version__, name="daskbox", binary="daskbox")
