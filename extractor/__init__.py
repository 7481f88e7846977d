"""FHIR River: the extractor."""
