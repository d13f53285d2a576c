"""picker-gui: positive-unlabeled particle picking for cryo-EM micrographs."""

__version__ = "0.1.0"
