"""The client against a real stack uses the end-to-end tests' sandbox and stack fixtures."""

from tests.e2e.conftest import sandbox, stack

__all__ = ["sandbox", "stack"]
