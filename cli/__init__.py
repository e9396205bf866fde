"""The ``herald`` command: the composition root that runs Herald's processes and operates it.

It may import every layer; nothing imports it.
"""
