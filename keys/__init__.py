"""The pure core of dkimroll: keys, DKIM records, TXT chunking and rendering, selectors, names.

Everything here is deterministic value work with no I/O and no Pulumi, so it can
be unit-tested exhaustively and reused by every DNS target and signer layout;
`tests/unit/test_layering.py` enforces that this package never imports `pulumi`.
"""
