def tracked_values(record: dict) -> tuple[int, int, dict[str, float]]:
    """A metrics.jsonl record as the trackers log it: its step, its time in ms, its numbers.

    Names are `<kind>/<field>` (`step/loss`, `epoch/val_loss`, `test/test_accuracy`), nested values
    joined with dots (`epoch/energy.joules`, `epoch/val_mae_targets.0`). A step record is logged at
    its optimizer step, an epoch record at its epoch number, any other at 0. `dtec export mlflow`
    imports this very function, so a pushed run carries the same series as a live one.
    """
    kind = record.get("kind", "record")
    at = {"step": "step", "epoch": "epoch"}.get(kind)
    values: dict[str, float] = {}

    def add(name: str, value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                add(f"{name}.{key}", item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                add(f"{name}.{index}", item)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            values[name] = float(value)

    for key, value in record.items():
        if key not in ("kind", "time", at):
            add(f"{kind}/{key}", value)
    step = int(record.get(at, 0)) if at else 0
    return step, int(round(float(record.get("time", 0.0)) * 1000)), values
