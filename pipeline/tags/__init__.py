"""The tag side: ingest, Stage I/II/III, query, gold scoring, synthetic tag jobs."""
