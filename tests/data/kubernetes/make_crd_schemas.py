"""Write the JSON schemas of the ServiceMonitor and PrometheusRule custom resources used by
tests/test_kubernetes.py, from the pydantic models of a PyPI package generated from the
prometheus-operator CRDs. Run it in a scratch virtualenv, not the project's:

    python3 -m venv /tmp/crd && /tmp/crd/bin/pip install 'cloudcoil.models.prometheus_operator==0.80.1.0'
    /tmp/crd/bin/python tests/data/kubernetes/make_crd_schemas.py

Source: https://pypi.org/project/cloudcoil.models.prometheus_operator/ 0.80.1.0 (Apache-2.0),
models of prometheus-operator v0.80.1's monitoring.coreos.com/v1 CRDs. Strict like kubeconform's
-strict: every object with declared properties refuses others, so a misspelt key fails.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

from cloudcoil.models.prometheus_operator import v1

HERE = Path(__file__).resolve().parent
PACKAGE = "cloudcoil.models.prometheus_operator"


def strict(node: Any) -> Any:
    """Close every object that lists its properties; drop titles (noise in a diff)."""
    if isinstance(node, dict):
        out = {k: strict(v) for k, v in node.items() if k != "title"}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def main() -> None:
    """Write one schema file per kind."""
    for kind, model in (("ServiceMonitor", v1.ServiceMonitor), ("PrometheusRule", v1.PrometheusRule)):
        schema = strict(model.model_json_schema(by_alias=True, mode="validation"))
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$comment": f"{kind} monitoring.coreos.com/v1, from {PACKAGE} {version(PACKAGE)}"
            " (tests/data/kubernetes/make_crd_schemas.py)",
            **schema,
        }
        path = HERE / f"{kind.lower()}-monitoring-v1.json"
        path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
