"""The network and nothing else: imports only torch and ``unetkit.config``."""

from unetkit.model.blocks import BlockSettings, DoubleConv, Down, Up, center_crop, fold_batch_norms, mirror_resize, pad_to_multiple
from unetkit.model.unet import UNet, count_parameters, he_init_, start_sigmoids_at_, to_labels, to_probabilities, validate_config
from unetkit.model.sizes import nearest_valid_input_sizes, valid_input_size, valid_output_size

__all__ = [
    "BlockSettings",
    "DoubleConv",
    "Down",
    "UNet",
    "Up",
    "center_crop",
    "count_parameters",
    "fold_batch_norms",
    "he_init_",
    "nearest_valid_input_sizes",
    "mirror_resize",
    "pad_to_multiple",
    "start_sigmoids_at_",
    "to_labels",
    "to_probabilities",
    "valid_input_size",
    "valid_output_size",
    "validate_config",
]
