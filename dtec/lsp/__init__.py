"""`dtec lsp`: a Language Server Protocol server over the same passes as `dtec lint` (extra `lsp`)."""
