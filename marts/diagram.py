"""The star schema as a Mermaid ER diagram, generated from dbt's manifest.

Tables are the marts (``fct_*``, ``dim_*``) with their documented columns;
edges are the ``relationships`` tests, so the diagram shows exactly the
foreign keys the build checks.
"""

from __future__ import annotations

from typing import Any


def _mart_nodes(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        key: node
        for key, node in manifest["nodes"].items()
        if node["resource_type"] == "model" and node["name"].startswith(("fct_", "dim_"))
    }


def mermaid_er(manifest: dict[str, Any]) -> str:
    """A ``erDiagram`` of the marts and the relationships tests between them."""
    marts = _mart_nodes(manifest)
    lines = ["erDiagram"]
    for node in sorted(marts.values(), key=lambda n: n["name"]):
        lines.append(f"    {node['name']} {{")
        for column in node["columns"].values():
            kind = (column.get("data_type") or "column").split("<")[0].replace(" ", "_")
            lines.append(f"        {kind} {column['name']}")
        lines.append("    }")
    edges = set()
    for node in manifest["nodes"].values():
        meta = node.get("test_metadata") or {}
        if node["resource_type"] != "test" or meta.get("name") != "relationships":
            continue
        child = marts.get(node.get("attached_node") or "")
        parents = [
            marts[d]
            for d in node["depends_on"]["nodes"]
            if d in marts and d != node.get("attached_node")
        ]
        if child is None or not parents:
            continue
        column = node.get("column_name") or meta.get("kwargs", {}).get("column_name", "")
        edges.add((parents[0]["name"], child["name"], column))
    for parent, child, column in sorted(edges):
        lines.append(f'    {parent} ||--o{{ {child} : "{column}"')
    return "\n".join(lines) + "\n"
