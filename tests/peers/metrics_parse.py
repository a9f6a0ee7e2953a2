"""Reads a /metrics page on stdin with the Prometheus client library's OpenMetrics parser
(an exposition parser that is not ours) and prints every sample as JSON:
{"name{label=value,...}": value}. Exits 1, with the parser's reason, when the page does not
parse."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main() -> int:
    text = sys.stdin.read()
    samples = {}
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                samples[f"{s.name}{{{labels}}}"] = s.value
    except Exception as e:  # the parser's own error types vary by version
        print(f"not a valid exposition: {e}", file=sys.stderr)
        return 1
    json.dump(samples, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
