"""The command lines around train.py, run from the repository root as `python -m tools.<name>`.

Each command is a short `main` over library modules of this package (docs/ARCHITECTURE.md,
"tools/"); no module here imports train.py (its run is launch.py's) or edits sys.path.
"""
