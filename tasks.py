from daskbox.tasks import ns  # noqa: F401  (invoke finds the collection by this name)
