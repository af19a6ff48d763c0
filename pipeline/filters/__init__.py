"""The filter stage: each filter keeps a document or drops it with a named reason (Wikipedia, length, language, junk)."""
