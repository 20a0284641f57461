"""Reading finished runs: metrics, the report, the probes."""
