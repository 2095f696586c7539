"""Typed run configuration: the schema (:mod:`~ssl_emp.config.schema`) and its loading with
one-line errors (:mod:`~ssl_emp.config.loading`) and the reference of its keys
(:mod:`~ssl_emp.config.reference`)."""

from ssl_emp.config.loading import (
    config_from_dict,
    literal_choices,
    load_config,
    method_config_class,
    read_yaml,
)
from ssl_emp.config.reference import describe_options
from ssl_emp.config.schema import (
    AugmentConfig,
    Config,
    DataConfig,
    EvalConfig,
    FeatureLayer,
    MemoryConfig,
    MethodConfig,
    ModelConfig,
    PolicyName,
    PruningConfig,
    RunConfig,
    TrainConfig,
    option,
)

__all__ = [
    "AugmentConfig",
    "Config",
    "DataConfig",
    "EvalConfig",
    "FeatureLayer",
    "MemoryConfig",
    "MethodConfig",
    "ModelConfig",
    "PolicyName",
    "PruningConfig",
    "RunConfig",
    "TrainConfig",
    "option",
    "config_from_dict",
    "describe_options",
    "literal_choices",
    "load_config",
    "method_config_class",
    "read_yaml",
]
