"""Test doubles that speak real protocols over loopback (used by the tests and the benchmarks).

They live with the tests, not in the installed package.
"""
