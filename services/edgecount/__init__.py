"""edgecount services: the processes of the appliance and its command line."""

__version__ = "0.1.0"
