"""Manifests of the objects a FederatedRound owns: pure functions from spec to dicts."""
