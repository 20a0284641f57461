"""The model work: scoring uncertainty, training adapters, evaluating."""
