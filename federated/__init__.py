"""Federated training as a Flower app: sites train on local data and send only updates."""

__all__: list[str] = []
