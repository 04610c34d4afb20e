"""The IR: typed, immutable models of a planned blueprint, its JSON Schema, and its graph."""

from dtec.ir.model import IR, IR_SCHEMA_ID, IR_VERSION, build_ir, ir_schema

__all__ = ["IR", "IR_SCHEMA_ID", "IR_VERSION", "build_ir", "ir_schema"]
