"""newstag: tag news articles by topic and tone."""

__version__ = "0.1.0"
