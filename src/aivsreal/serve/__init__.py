"""Stage 7, serve: the REST API and web page around one detector."""
