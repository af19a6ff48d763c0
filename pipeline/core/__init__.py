"""The leaf every stage stands on: errors, configuration, schema, files, run summaries, URLs, HTML decoding. Imports nothing else of the project."""
