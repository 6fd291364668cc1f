from daskbox.tasks import ns

__all__ = ["ns"]
