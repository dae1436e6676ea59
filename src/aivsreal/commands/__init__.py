"""One module per CLI verb that spans stages: each is what `aivsreal VERB` does, as plain functions."""
