"""The code table: one row per diagnostic rule; each rule's documentation is `docs/<code>.md` here."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

_DOCS = Path(__file__).resolve().parent / "docs"


@dataclass(frozen=True, slots=True)
class Rule:
    """A diagnostic rule: stable code, kebab-case name, default severity and one-line summary."""

    code: str
    name: str
    severity: str
    summary: str

    @property
    def doc(self) -> str:
        """Return the rule's full documentation (Markdown)."""
        return rule_doc(self.code)


_TABLE = (
    # Files and syntax
    ("DT001", "unreadable-file", "error", "A blueprint file cannot be read"),
    ("DT002", "syntax-error", "error", "The text does not follow the .twin grammar"),
    ("DT003", "unterminated-string", "error", "A string is not closed on its line"),
    ("DT004", "invalid-escape", "error", "A string holds an escape other than `\\\"`, `\\\\`, `\\n` and `\\t`"),
    ("DT005", "unknown-unit", "error", "A number carries a unit suffix dtec does not know"),
    ("DT006", "misplaced-import", "error", "An `import` stands inside a block"),
    ("DT010", "import-failed", "error", "An imported file cannot be read or parsed"),
    ("DT011", "import-cycle", "error", "Files import each other in a cycle"),
    # Vocabulary, types and references
    ("DT100", "unknown-block", "error", "A block kind is not part of the language"),
    ("DT101", "unknown-attribute", "error", "An attribute is not known in its block or map"),
    ("DT102", "unknown-symbol", "error", "A bare name is not one of the values the attribute takes"),
    ("DT103", "unknown-function", "error", "A call names a function the attribute does not take"),
    ("DT104", "unknown-argument", "error", "A call passes an argument the function does not take"),
    ("DT105", "type-mismatch", "error", "A value has the wrong type for its attribute"),
    ("DT106", "value-out-of-range", "error", "A value is outside the range its attribute allows"),
    ("DT107", "missing-attribute", "error", "A required attribute or argument is missing"),
    ("DT108", "missing-block", "error", "A required block is missing"),
    ("DT109", "duplicate-attribute", "error", "An attribute or argument is given twice"),
    ("DT110", "duplicate-block", "error", "A block is defined twice"),
    ("DT111", "label-mismatch", "error", "A block has a label it must not have, or lacks one it needs"),
    ("DT112", "unresolved-reference", "error", "A reference names a block that does not exist"),
    ("DT113", "env-unset", "error", "`env(\"NAME\")` names an unset variable and has no default"),
    ("DT114", "conflicting-values", "error", "Values contradict each other"),
    ("DT115", "unused-block", "warning", "A block is defined but nothing uses it"),
    ("DT120", "unused-suppression", "warning", "A `# dtec: ignore[...]` comment suppresses nothing"),
    ("DT121", "invalid-suppression", "warning", "A suppression comment is malformed or names no rule"),
    # Machines
    ("DT200", "unknown-target", "error", "A target names a machine with no profile"),
    ("DT201", "unknown-partition", "error", "The partition does not exist on the machine"),
    ("DT202", "too-many-nodes", "error", "The job asks for more nodes than the partition allows"),
    ("DT203", "walltime-exceeded", "error", "The walltime is above the partition's limit"),
    ("DT204", "too-many-gpus", "error", "More GPUs per node are asked for than a node has"),
    ("DT205", "unsupported-precision", "error", "The hardware lacks the requested precision"),
    ("DT206", "gpu-strategy-on-cpu", "error", "GPUs are asked for on a machine without GPUs"),
    ("DT207", "invalid-zero-stage", "error", "The DeepSpeed ZeRO stage is out of range or unused"),
    ("DT208", "model-does-not-fit", "error", "The model does not fit in memory even fully sharded"),
    ("DT209", "missing-account", "error", "An HPC target has no account to charge"),
    ("DT210", "missing-image", "error", "A Kubernetes target has no container image"),
    ("DT211", "account-format", "warning", "The account does not look like the site's accounts"),
    ("DT212", "partial-node", "warning", "The job uses part of a node on a whole-node partition"),
    ("DT213", "workers-exceed-cpus", "warning", "Data-loader workers exceed the CPUs of a rank"),
    ("DT214", "broken-machine-profile", "warning", "A user machine profile cannot be loaded"),
    ("DT215", "unsupported-feature", "error", "The target cannot express a feature of the blueprint"),
    ("DT216", "invalid-machine-override", "error", "A target's `machine { }` value does not fit its machine"),
    ("DT217", "no-python-environment", "warning", "A Slurm job has no way to find PyTorch, or a launcher its machine needs"),
    ("DT218", "data-outside-container", "warning", "A job in a container reads a data file its container does not bind"),
    # Model and data
    ("DT300", "shape-mismatch", "error", "The data's shape does not match the model's input or output"),
    ("DT301", "task-mismatch", "error", "The loss does not suit the data's targets or classes"),
    ("DT302", "data-file-not-found", "error", "A data file named by the blueprint does not exist"),
    ("DT303", "unreadable-data-file", "error", "A data file is not the kind of file its source reads"),
    ("DT304", "unknown-data-key", "error", "An `.npz` array, a CSV column, a variable or an HDF5 dataset named by the blueprint is not in the file"),
    ("DT305", "data-file-mismatch", "error", "A data file's shapes, counts or values contradict the blueprint"),
    ("DT306", "not-checked", "info", "A file or module is not on this computer or outside the project: not checked"),
    ("DT307", "code-not-found", "error", "`python(\"module:name\")` names code that is not in the code folder"),
    ("DT308", "check-failed", "error", "`dtec check` could not build the data or the model, or run a training step"),
    ("DT309", "code-not-bundled", "error", "A code folder cannot be copied into the bundle"),
    ("DT310", "metric-mismatch", "error", "A monitored metric is not recorded for the task, or `min`/`max` does not fit it"),
    ("DT311", "metric-task-mismatch", "error", "A metric in `train.metrics` does not suit the task: F1 on regression, R² on classification"),
    ("DT312", "duplicate-metric", "error", "`train.metrics` names the same metric twice"),
    ("DT327", "weights-source", "error", "A model's `weights = from(...)` names no readable run or blueprint, or a model that is not in it"),
    ("DT328", "weights-mismatch", "error", "The weights come from a model of another architecture or size"),
    ("DT329", "freeze-unknown", "error", "A `freeze` prefix names no parameter of the model"),
    ("DT330", "weights-not-finished", "error", "The run named by `from(run = ...)` has no finished `final_model.pt`"),
    ("DT319", "unused-samples", "warning", "The data's `split` fractions add up to less than 1: some samples are never used"),
    ("DT320", "not-exportable", "warning", "`dtec check` could not export the model as `train { export }` asks"),
    ("DT321", "not-evaluable", "error", "`dtec evaluate` names a run that has no model to evaluate, or nothing to evaluate it on"),
    ("DT323", "loss-weights-mismatch", "error", "A loss's per-class weights do not match the classes or the model's outputs"),
    ("DT331", "windowed-random-split", "error", "Overlapping windows along time are split at random: train and validation share steps"),
    ("DT332", "normalize-unsupported", "error", "`normalize` is set on a data source that does not scale its inputs"),
    ("DT333", "dimension-mismatch", "error", "A variable does not run along the window's dimension first, or the variables disagree on their other dimensions"),
    ("DT334", "window-too-long", "error", "A window and its horizon are longer than a part of the split"),
    ("DT335", "too-few-samples", "error", "The train split gives fewer samples than one batch per rank"),
    ("DT336", "data-library-missing", "info", "A data file is not checked: the library that reads it is not installed here"),
    ("DT350", "loss-unused-by-objective", "error", "`train.loss` is given, but the objective computes its own losses (`elbo`'s `recon`, `reverse_kl`, a `python()` step)"),
    ("DT351", "objective-output-missing", "error", "The objective needs model outputs by name that the model does not declare in `outputs`"),
    ("DT352", "objective-loss-mismatch", "error", "`elbo` reconstructs its input with a classification loss"),
    ("DT353", "metrics-without-prediction", "error", "`metrics` on an objective that makes no prediction to score (`reverse_kl`, a `python()` step)"),
    ("DT354", "fields-without-dict-items", "error", "`input`, `target` or `fields` names fields (or `target` splits channels) of a source whose items are (input, target) pairs"),
    ("DT356", "gan-models-invalid", "error", "A `gan`'s generator and discriminator are one model, or a built-in architecture"),
    ("DT357", "optimizer-model-mismatch", "error", "An `optimizer` block names a model the objective does not train, a model has two, a trained model none, or `train.optimizer` is given beside them"),
    ("DT358", "several-models-strategy", "error", "Several models under a strategy whose script wraps one model and one optimizer (FSDP, DeepSpeed)"),
    ("DT359", "gan-setting-unsupported", "error", "A training setting a `gan` does not support: accumulation, fp16, a plateau schedule, export, initial weights"),
    ("DT360", "gan-term-invalid", "error", "A `gan`'s extra term scores an output the discriminator does not name, or its real/fake logit"),
    ("DT361", "find-unused-not-ddp", "error", "`find_unused_parameters` is given for a strategy other than DDP"),
    ("DT355", "outputs-invalid", "error", "A model's `outputs` are named twice, or named on a built-in architecture that returns one tensor"),
    ("DT366", "scaling-points-invalid", "error", "A scaling study names no points, both `ranks` and `nodes`, a point twice, or comes with a sweep"),
    ("DT367", "scaling-batch-indivisible", "error", "A strong scaling study's global batch does not divide over a point's ranks"),
    ("DT368", "scaling-ranks-unfit", "error", "A scaling point's ranks do not fill whole nodes, or need more nodes than the partition allows"),
    ("DT369", "scaling-comm-unmeasured", "warning", "A scaling study's strategy has communication dtec cannot split out of the step"),
    # Experiment tracking
    ("DT370", "tracking-uri", "error", "An MLflow tracking URI has a scheme MLflow does not take"),
    ("DT371", "tracking-offline", "warning", "The run logs to a tracking server the target's compute nodes cannot reach"),
    ("DT372", "tracker-twice", "error", "A tracker is in `track` twice"),
    ("DT373", "export-refused", "error", "`dtec export mlflow` cannot push a run: not found, not finished, or no store to push to"),
    ("DT362", "sampler-objective-mismatch", "error", "A `sampler` source is trained by an objective other than `reverse_kl`, or `reverse_kl` reads a data set"),
    ("DT363", "sampler-key-unused", "error", "A data block with a `sampler` source sets a key a sampler does not use (`split`, `shuffle`, `input`, `target`, `path`)"),
    ("DT364", "init-overwritten", "warning", "A model's `init` is replaced by the trained weights it starts from (`weights = from(...)`)"),
    ("DT376", "channel-split-invalid", "error", "A channel split (`target = channels(k)`) takes a channel twice, one the samples do not have, or all of them"),
    ("DT377", "batch-field-unknown", "error", "An objective reads a batch field the data does not carry (`fields = [...]`)"),
    ("DT378", "batch-fields-invalid", "error", "A data set's `fields` that its objective does not read, of items that are pairs, named twice, or named `input` or `target` (the batch's own keys)"),
    # Sweeps
    ("DT340", "sweep-unknown-key", "error", "A sweep's space names a key the blueprint does not have"),
    ("DT341", "sweep-goal-mismatch", "error", "A sweep's goal looks for the worst trials of its metric"),
    ("DT342", "sweep-distribution-mismatch", "error", "A distribution of the sweep's space draws values its key does not take"),
    ("DT343", "sweep-bounds", "error", "A distribution's bounds are not in order, or its step or log scale does not fit them"),
    ("DT344", "sweep-value-rejected", "error", "A value of the sweep's space fails the blueprint's checks"),
    ("DT345", "sweep-corner-rejected", "error", "A corner of the sweep's space fails the checks of a target (memory, strategy)"),
    ("DT380", "sweep-value-warned", "warning", "A value of the sweep's space draws a warning the base blueprint does not (its trials run, but `best.twin` would not lint clean)"),
    ("DT379", "sweep-share-rejected", "error", "The blueprint fails as one of the `parallel` trials that share a local computer (its part of the CPUs, memory and GPUs)"),
    ("DT346", "sweep-space-invalid", "error", "A key is in the space twice, or the sampler cannot draw the space"),
    ("DT347", "sweep-storage", "error", "The sweep's storage is no journal or database URL, or not one the target's workers share"),
    ("DT348", "sweep-trial-spans-pods", "error", "A Kubernetes sweep's trial needs several nodes: each trial runs in one worker pod"),
    ("DT349", "sweep-storage-password", "error", "A Kubernetes sweep's storage URL holds a password that the workers' manifest would carry in plain text"),
    ("DT374", "sweep-storage-secret", "error", "`storage_secret` does not name a Kubernetes Secret and key as `<secret>/<key>`"),
    ("DT315", "beyond-the-run", "warning", "A warm-up, milestone or patience is as long as the run: it never takes effect"),
)

RULES: dict[str, Rule] = {row[0]: Rule(*row) for row in _TABLE}
BY_NAME: dict[str, Rule] = {r.name: r for r in RULES.values()}


def rule(code_or_name: str) -> Rule:
    """Return a rule by code (`DT101`) or name (`unknown-attribute`)."""
    found = RULES.get(code_or_name.upper()) or BY_NAME.get(code_or_name.lower())
    if found is None:
        raise KeyError(code_or_name)
    return found


@cache
def rule_doc(code: str) -> str:
    """Return a rule's Markdown documentation, or an empty string when it has none yet."""
    path = _DOCS / f"{code}.md"
    return path.read_text(encoding="utf-8") if path.is_file() else ""
