"""emtui: the Textual app and the command line. Imports heavy ML libraries only lazily."""

__version__ = "0.1.0"
