"""What the service tells its scorer process through the environment.

Only names live here: ``serving.scorer_app`` imports this module in the scorer
process, which must import nothing of ``revenue_model`` before the model is
loaded, or it would run the imported copy instead of the model's own
(``revenue_model.code_identity``).
"""

# The folder the service downloads the model to; the scorer waits for it.
MODEL_DIR_ENV = "REVENUE_SCORER_MODEL_DIR"
