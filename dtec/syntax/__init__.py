"""The .twin syntax: the AST and the parser that builds it."""
