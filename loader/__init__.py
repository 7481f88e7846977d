"""FHIR River: the loader."""
