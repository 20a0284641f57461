"""Tasks and their data: task YAML files, loading, fingerprints, batching."""
