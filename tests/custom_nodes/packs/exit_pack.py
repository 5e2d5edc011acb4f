"""A pack that calls sys.exit while being imported (it must not take the server down)."""
import sys

sys.exit(3)
