"""The official client's fixtures (a real `balances serve`), for the tests here that drive the
service through it."""

from tests.test_autumn_sdk import autumn, customer, service_url

__all__ = ["autumn", "customer", "service_url"]
