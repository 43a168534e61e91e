"""Images as files: decoding, metadata, encoding of results, output options, memory budget."""
