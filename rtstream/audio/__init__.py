"""Pure DSP kernels on numpy arrays: no I/O, no clock, no trio."""
