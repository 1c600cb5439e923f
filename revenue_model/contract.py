"""The data contract (../shared/contract.md) as constants: columns in, columns out.

Everything that names a column imports it from here, so a change to the
contract is a change to this file.
"""

REQUIRED_STRINGS = ("country", "source", "platform")
OPTIONAL_STRINGS = ("country_region", "device_family", "os_version", "user_id")
REQUIRED_EVENTS = ("event_1", "event_2")
OPTIONAL_EVENTS = ("event_3",)

STRING_COLUMNS = REQUIRED_STRINGS + OPTIONAL_STRINGS
EVENT_COLUMNS = REQUIRED_EVENTS + OPTIONAL_EVENTS
INPUT_COLUMNS = (
    "country", "country_region", "source", "platform", "device_family",
    "os_version", "event_1", "event_2", "event_3", "user_id",
)
REQUIRED_COLUMNS = REQUIRED_STRINGS + REQUIRED_EVENTS

# user_id is logged, never a feature.
FEATURE_INPUTS = tuple(c for c in INPUT_COLUMNS if c != "user_id")

TARGET = "revenue"           # USD spent in the first 7 days after install
INSTALL_DATE = "install_date"

MAX_STRING_LENGTH = 200

OUTPUT_COLUMNS = ("predicted_revenue", "payer_probability", "revenue_p10", "revenue_p90")

# The pyfunc's LightGBM threads for large batches, set by whoever runs it (the scorer shares 2 cores).
THREADS_ENV = "REVENUE_MODEL_THREADS"
