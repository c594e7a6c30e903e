"""Parses the host's metrics (stdin) with prometheus-client's OpenMetrics
parser, the reference one, and prints every sample as JSON:
[[name, {labels}, value], ...]. A text it cannot parse fails the script."""

import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

samples = [
    [sample.name, sample.labels, sample.value]
    for family in text_string_to_metric_families(sys.stdin.read())
    for sample in family.samples
]
print(json.dumps(samples))
