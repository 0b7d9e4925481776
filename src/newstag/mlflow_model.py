"""What MLflow runs to load a logged newstag model ("models from code"): nothing is pickled, the
model is newstag's own NewstagModel, which loads the bundle through newstag's verified loader."""

import mlflow.models

from newstag.serving import NewstagModel

mlflow.models.set_model(NewstagModel())
