"""Fixtures shared by the end-to-end modules."""

from tests.e2e.gateway_network import gateway_network, s3_keys

__all__ = ["gateway_network", "s3_keys"]
