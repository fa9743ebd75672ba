"""traitvec: extract behavioural trait vectors from language models, steer with them, and prove it.

Example:
    >>> import traitvec as tv
    >>> trait = tv.load_trait("states/optimism")
    >>> loaded = tv.load_model("gemma-3-270m")
    >>> acts = tv.capture(loaded, trait, positions=["prefill-mean"])["prefill-mean"]
    >>> vector = tv.MeanDiff().fit(acts)
    >>> with tv.steer(loaded, vector, layer=9, coefficient=1.0):
    ...     answers = tv.generate(loaded, list(trait.questions), max_new_tokens=48)

The library reads no file and no environment variable on import and prints nothing; it logs to
``logging.getLogger("traitvec...")``.
"""

__version__ = "0.1.0"

# Public names and the module that defines each. They are imported on first use, so that
# ``import traitvec`` (and the command line) stays fast and torch loads only when needed.
_EXPORTS = {
    "AuditReport": "audit", "audit_trait": "audit", "audit_traits": "audit",
    "Activations": "activations", "POSITIONS": "capture", "capture": "capture", "capture_sequences": "capture",
    "ConfigError": "errors", "ExperimentNotFoundError": "errors", "JudgeError": "errors", "ModelError": "errors",
    "TraitDataError": "errors", "TraitNotFoundError": "errors", "TraitvecError": "errors", "VectorError": "errors",
    "Evaluation": "evaluation", "evaluate": "evaluation",
    "ExperimentConfig": "experiments", "list_experiments": "experiments", "load_experiment": "experiments",
    "ExtractionSettings": "stages.extract", "extract_trait": "stages.extract",
    "Generation": "generation", "generate": "generation",
    "Judge": "judge", "JudgeScore": "judge", "ScoreSummary": "judge", "make_judge": "judge", "summarize": "judge",
    "OpenAIJudge": "judge", "LocalJudge": "judge",
    "find_layers": "layers",
    "PCA": "methods", "MeanDiff": "methods", "Method": "methods", "Probe": "methods", "get_method": "methods",
    "LoadedModel": "models", "load_model": "models", "wrap_model": "models",
    "TraitRun": "stages.pipeline", "run_pipeline": "stages.pipeline",
    "SteeringSettings": "stages.steer", "run_steering_eval": "stages.steer",
    "VetSettings": "stages.vet", "vet_trait": "stages.vet",
    "Steer": "steering", "SteeringHandle": "steering", "steer": "steering", "steer_rows": "steering",
    "Prompt": "traits", "Trait": "traits", "list_traits": "traits", "load_trait": "traits",
    "TraitVector": "vectors",
    # reading texts with vectors (monitor, compare) and preference data
    "Readout": "monitor", "encode_texts": "monitor", "read_tokens": "monitor", "project_texts": "monitor",
    "MonitorSettings": "stages.monitor", "GenerateSettings": "stages.monitor", "run_monitor": "stages.monitor",
    "CompareSettings": "stages.compare", "run_compare": "stages.compare", "ReadoutChoice": "stages.readouts",
    "ImportReport": "preference", "import_pairs": "preference",
}  # fmt: skip

__all__ = [
    "__version__",
    "Activations",
    "AuditReport",
    "ConfigError",
    "Evaluation",
    "ExperimentConfig",
    "ExperimentNotFoundError",
    "ExtractionSettings",
    "Generation",
    "Judge",
    "JudgeError",
    "JudgeScore",
    "LoadedModel",
    "MeanDiff",
    "Method",
    "ModelError",
    "PCA",
    "POSITIONS",
    "Probe",
    "Prompt",
    "ScoreSummary",
    "Steer",
    "SteeringHandle",
    "SteeringSettings",
    "Trait",
    "TraitDataError",
    "TraitNotFoundError",
    "TraitRun",
    "TraitVector",
    "TraitvecError",
    "VectorError",
    "VetSettings",
    "audit_trait",
    "audit_traits",
    "capture",
    "capture_sequences",
    "evaluate",
    "extract_trait",
    "find_layers",
    "generate",
    "get_method",
    "list_experiments",
    "list_traits",
    "load_experiment",
    "load_model",
    "load_trait",
    "make_judge",
    "run_pipeline",
    "run_steering_eval",
    "steer",
    "steer_rows",
    "summarize",
    "vet_trait",
    "wrap_model",
    "OpenAIJudge",
    "LocalJudge",
    "Readout",
    "encode_texts",
    "read_tokens",
    "project_texts",
    "MonitorSettings",
    "GenerateSettings",
    "run_monitor",
    "CompareSettings",
    "run_compare",
    "ReadoutChoice",
    "ImportReport",
    "import_pairs",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'traitvec' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
