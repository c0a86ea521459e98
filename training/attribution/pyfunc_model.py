"""The registered conversion model's MLflow pyfunc, as code (MLflow's "models from code"): the
registry stores this file and the skops model beside it, never a pickled object."""

from mlflow.models import set_model

from training.attribution.tracking import ConversionModelPyfunc

set_model(ConversionModelPyfunc())
