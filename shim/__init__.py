"""verikv.shim."""
