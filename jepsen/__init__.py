"""verikv.jepsen."""
