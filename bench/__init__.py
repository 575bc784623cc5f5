"""GPU benchmark scripts (not tests): run on a machine with CUDA."""
