"""Application services: intake, operator actions, maintenance and the CLI runner.

Each takes its collaborators as arguments; ``shared.app`` is where they are built.
"""
