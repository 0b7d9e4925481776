"""The pipelines newstag trains: features, classifiers, calibration, and the saved bundle."""
