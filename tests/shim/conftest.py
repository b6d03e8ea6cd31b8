"""Shared test setup for the shim: async tests run on asyncio; `slow` marks real-process tests."""

import asyncio

import pytest



def pytest_collection_modifyitems(items):
    # Works whether or not pytest-asyncio runs in auto mode.
    for item in items:
        if isinstance(item, pytest.Function) and asyncio.iscoroutinefunction(item.function):
            item.add_marker(pytest.mark.asyncio)
