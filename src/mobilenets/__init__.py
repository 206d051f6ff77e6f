"""mobilenets: the MobileNet family as data, with a training pipeline and a road to int8 deployment.

Public entry points::

    import mobilenets
    model = mobilenets.create_model("mobilenet_v3_small", num_classes=10, small_input=True)
    print(mobilenets.profile(model, 32).macs)
"""

from .cost import ProfileResult, profile
from .models import get_model_kwargs, list_models, register_model
from .weights import create_model, from_pretrained, load_weights
from .weights.registry import list_pretrained

__version__ = "0.1.0"

__all__ = [
    "ProfileResult",
    "__version__",
    "create_model",
    "from_pretrained",
    "get_model_kwargs",
    "list_models",
    "list_pretrained",
    "load_weights",
    "profile",
    "register_model",
]
