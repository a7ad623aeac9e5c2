"""callbridge: a self-hosted bridge between a cloud PBX and the CRMs and shops a business uses."""

__version__ = "0.1.0"
