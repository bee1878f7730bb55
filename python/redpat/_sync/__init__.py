"""The sync pattern classes: generated at build time from redpat/_async by unasync (see
setup.py); this package holds nothing else."""
