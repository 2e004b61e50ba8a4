"""The API users call: load a trained surrogate, sample, roll out, export."""

from surrogates.emulator.surrogate import Surrogate

__all__ = ["Surrogate"]
