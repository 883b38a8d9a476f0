"""course_helpers: companion package for the course *Gene networks with Geneformer*."""
__version__ = "0.1.0"
