"""tagfold.pipeline: tag ingest, Stage I/II/III, labels, audio prep and the demo data."""
