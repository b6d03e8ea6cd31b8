"""verikv.verified_core: the Dafny-proven consensus core, compiled to a CPython extension.

`core` is the thin Python API over the extension `_core` (conversions only, no decisions);
`build` produces `_core` from dafny/. Importing this package alone loads neither, so the
build can run before the extension exists. Nothing else of verikv is imported here.
"""
