"""tagfold.training: loaders, models, the training loop, evaluation and prediction."""
