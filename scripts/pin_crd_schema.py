"""Print a CRD's openAPIV3Schema for one version as JSON, without its descriptions (tests/schemas/).

Usage: python scripts/pin_crd_schema.py CRD.yaml VERSION > tests/schemas/KIND.json
"""

from __future__ import annotations

import json
import sys

import yaml


def strip(node):
    """Return `node` without `description` keys (validation does not read them)."""
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if not (k == "description" and isinstance(v, str))}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def main(path: str, version: str) -> None:
    """Write the schema of `version` of the CRD in `path` to stdout."""
    with open(path, encoding="utf-8") as handle:
        crd = next(d for d in yaml.safe_load_all(handle) if d and d.get("kind") == "CustomResourceDefinition")
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    json.dump(strip(served["schema"]["openAPIV3Schema"]), sys.stdout, indent=None, sort_keys=True, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
