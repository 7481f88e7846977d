"""FHIR River: the adapters."""
