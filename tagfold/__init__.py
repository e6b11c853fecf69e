"""tagfold: clean and collapse music folksonomy tags; train and evaluate auto-taggers on them."""

__version__ = "0.1.0"
