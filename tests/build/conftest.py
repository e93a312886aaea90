"""Build tests use the shared ``kran`` fixture (tests/conftest.py): the real CLI, ``build`` included."""
