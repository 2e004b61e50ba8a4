"""Conditional GAN surrogates for fields that numerical solvers write to HDF5.

Subpackages, from the bottom layer up: ``data`` (reading any HDF5 layout), ``models``
(generator and discriminator), ``training`` (losses, loop, checkpoints), ``emulator``
(the :class:`~surrogates.emulator.Surrogate` users load) and ``evaluation`` (metrics
against held-out solver output).
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
