"""What the service tells its scorer process through the environment, and how it asks it back.

Only names live here: ``serving.scorer_app`` imports this module in the scorer
process, which must import nothing of ``revenue_model`` before the model is
loaded, or it would run the imported copy instead of the model's own
(``revenue_model.code_identity``).
"""

# The folder the service downloads the model to; the scorer waits for it.
MODEL_DIR_ENV = "REVENUE_SCORER_MODEL_DIR"
# The start's nonce, returned by IDENTITY_ROUTE: a process that does not know it is not this start.
NONCE_ENV = "REVENUE_SCORER_NONCE"
# The read end of a pipe only the service writes to: closed, the scorer kills itself (scorer_main.py).
PARENT_FD_ENV = "REVENUE_SCORER_PARENT_FD"
# CPU priority offset of the scorer (a shadow's is lowered).
NICE_ENV = "REVENUE_SCORER_NICE"
# Written by the service into the model directory before the scorer may load it (model URI, name,
# version); returned with the nonce by the scorer's IDENTITY_ROUTE.
IDENTITY_FILE = "serving_identity.json"
IDENTITY_ROUTE = "/serving/identity"
