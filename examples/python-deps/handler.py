"""A Python function with a dependency: `inflection`, installed by `gantry fn build`
from requirements.txt (here from the wheel in vendor/, so no package index is needed)."""

import inflection


def handle(event, context):
    word = (event or {}).get("word", "function")
    print(f"inflecting {word!r}")  # a log line (stderr), not the result
    return {
        "plural": inflection.pluralize(word),
        "camel": inflection.camelize(inflection.underscore(word).replace("-", "_")),
        "library": "inflection",
        "library_file": inflection.__file__,
    }
