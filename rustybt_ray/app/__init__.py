"""The application front end: the ``rustybt-ray`` command, the demo, sweep files and plots.

Nothing below this package is imported by the library layers (data, engine, cluster,
optimize): they can be used from a notebook or a Ray job without it.
"""
