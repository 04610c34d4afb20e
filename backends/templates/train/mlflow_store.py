def mlflow_uri(uri: str | None, run_dir: Path) -> str:
    """The tracking URI: no `uri` is an SQLite store in run/mlflow/; a folder is a file store there.

    `dtec run` opens a study's or sweep's parent run with this very function (run_dir: the study's
    folder), so the parent and its children resolve a blueprint's `uri` alike.
    """
    if uri is None:
        (run_dir / "mlflow").mkdir(parents=True, exist_ok=True)
        return "sqlite:///" + str(run_dir / "mlflow" / "mlflow.db")  # an absolute path: four slashes
    if "://" in uri and not uri.startswith("file:"):
        return uri
    folder = run_dir / uri.removeprefix("file://").removeprefix("file:")
    return folder.resolve().as_uri()


def mlflow_experiment(client, tracker: dict, run_dir: Path) -> str:
    """The id of the tracker's experiment, created on first use."""
    experiment = client.get_experiment_by_name(tracker["experiment"])
    if experiment is not None:
        return experiment.experiment_id
    # The offline store keeps its artifacts beside it, not in the working directory.
    where = (run_dir / "mlflow" / "artifacts").as_uri() if tracker["uri"] is None else None
    return client.create_experiment(tracker["experiment"], artifact_location=where)
