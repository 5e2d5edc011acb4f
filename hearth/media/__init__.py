"""Media values nodes pass around besides images: VIDEO (video.py). Heavy libraries load lazily."""
