"""For tools that still run ``setup.py``; everything is declared in pyproject.toml,
the requirements in requirements/*.txt."""
from setuptools import setup

setup()
