"""The built-in plugins of surgery.

Each module is one plugin, registered through the ``surgery`` entry-point
group in pyproject.toml exactly as a third-party package would register its
own. None of them imports Keras at registration time.
"""
