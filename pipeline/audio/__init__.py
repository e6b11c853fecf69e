"""The audio side: manifests and splits, audio prep, the demo dataset."""
