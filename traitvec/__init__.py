"""traitvec: extract behavioural trait vectors from language models, steer with them, and prove it.

The library reads no file and no environment variable on import and prints nothing; it logs to
``logging.getLogger("traitvec...")``.
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    ConfigError,
    ExperimentNotFoundError,
    JudgeError,
    ModelError,
    TraitDataError,
    TraitNotFoundError,
    TraitvecError,
    VectorError,
)
from .experiments import ExperimentConfig, list_experiments, load_experiment  # noqa: E402
from .layers import find_layers  # noqa: E402
from .models import LoadedModel, load_model, wrap_model  # noqa: E402
from .traits import Prompt, Trait, list_traits, load_trait  # noqa: E402

__all__ = [
    "__version__",
    "ConfigError",
    "ExperimentConfig",
    "ExperimentNotFoundError",
    "JudgeError",
    "LoadedModel",
    "ModelError",
    "Prompt",
    "Trait",
    "TraitDataError",
    "TraitNotFoundError",
    "TraitvecError",
    "VectorError",
    "find_layers",
    "list_experiments",
    "list_traits",
    "load_experiment",
    "load_model",
    "load_trait",
    "wrap_model",
]
