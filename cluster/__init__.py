"""verikv.cluster."""
