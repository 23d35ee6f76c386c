"""pushgo: a self-hosted push-notification gateway."""

__version__ = "0.1.0"
