"""The .twin language's meaning: vocabulary, loading with imports, and checks."""
