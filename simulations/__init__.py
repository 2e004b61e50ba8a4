"""Reference solvers that write the canonical HDF5 layout."""
