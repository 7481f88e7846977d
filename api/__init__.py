"""FHIR River: the api."""
