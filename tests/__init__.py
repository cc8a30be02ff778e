"""The test suite; mirrors the packages (appliance, compress, federated)."""
