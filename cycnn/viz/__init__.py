"""Pictures: figures of a model and its training, the HTML report, and the live page."""
