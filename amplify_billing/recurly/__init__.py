"""Everything that speaks Recurly: the gateway (with its transport and wire, the only importers of the SDK), parsing
of its answers into the domain's values, translation of the domain's values into request bodies, and the executor
of typed changes.

This package's ``__init__`` imports nothing, so the pure core may use ``translate`` without loading the SDK
(docs/architecture.md, "Layers").
"""
