"""Model file that MLflow loads for the clusterer (MLflow "models from code")."""

import mlflow.models

from aeclust.serving import Clusterer

mlflow.models.set_model(Clusterer())
