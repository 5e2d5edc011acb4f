"""A pack that fails while importing, after registering nothing."""
raise RuntimeError("hearth test: this pack is broken on purpose")
