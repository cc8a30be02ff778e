"""The serving daemon, driven over gRPC by tritonclient."""
