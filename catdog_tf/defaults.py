"""Facts every layer shares, defined once here: the image size of the article and the presets."""

# (height, width) every image is resized to: a quarter of the common 375x500.
IMAGE_SIZE = (94, 125)

# tf.io.decode_jpeg's dct_method for every run whose config does not say otherwise: the one
# every run decoded with before the choice existed.
DCT_METHOD = "INTEGER_FAST"
