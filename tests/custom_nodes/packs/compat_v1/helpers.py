def image_size(images):
    """(width, height) of an IMAGE batch [B, H, W, C]."""
    return int(images.shape[2]), int(images.shape[1])
