"""Encoder and fusion-head registries and implementations."""

from workbench.models.base import Encoder as Encoder
from workbench.models.base import EncoderSpec as EncoderSpec
from workbench.models.base import OfflineModelError as OfflineModelError
from workbench.models.base import create_encoder as create_encoder
from workbench.models.base import get_encoder_class as get_encoder_class
from workbench.models.base import get_encoder_spec as get_encoder_spec
from workbench.models.base import list_encoders as list_encoders
from workbench.models.base import load_plugin as load_plugin
from workbench.models.base import register_encoder as register_encoder
from workbench.models.base import resolved_options as resolved_options
