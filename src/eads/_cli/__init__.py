"""Command groups of the eads CLI; each module defines ``register(app)``."""
