"""Data quality: Great Expectations suites of every layer, validated per interval."""

import logging

# GX logs every decorator it registers at INFO when imported: hundreds of lines
# per task log that say nothing about the data.
logging.getLogger("great_expectations").setLevel(logging.WARNING)
