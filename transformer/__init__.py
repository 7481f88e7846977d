"""FHIR River: the transformer."""
