"""Who labels (the Oracle interface, the gold oracle) and where labels are kept (the ledger)."""
