"""Benchmarks of the register, run by ``make bench`` (``python -m benchmarks``).

Each section (``machine``, ``register``, ...) is a module with a ``run``
function returning ``Figure`` values; ``report`` prints them. A later issue
adds a figure by adding a function to a section, or a section to
``__main__``.
"""
