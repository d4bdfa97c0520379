"""The command-line entry points, one thin module per command of ``python -m training``.

Each module parses its options and calls the library; ``python -m training`` lists them.
"""
