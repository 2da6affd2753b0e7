"""``bopsweep resume`` and ``bopsweep worker``: run an existing study's trials on this machine,
with the definition stored in the study."""

from __future__ import annotations

from pathlib import Path

import typer

from bopsweep.cli.app import command
from bopsweep.cli.options import Database, JoinOptions, Placement, Storage, StudyName, with_groups
from bopsweep.cli.studies import preview, study_display


def _join(
    database: Path | None,
    storage: str | None,
    study: str | None,
    local: JoinOptions,
    where: Placement,
    worker_index: int = 0,
) -> None:
    from bopsweep.driver import run_study
    from bopsweep.driver.study import stored_spec
    from bopsweep.store import storage_url

    url = storage_url(storage, database)
    spec = stored_spec(url, study)  # read-only until every option is checked
    device = local.device or spec.base.device
    options = where.dispatch_options(url, device, local.data_dir, worker_index=worker_index)
    options.join = True  # a study deleted since it was read is refused, never made again
    if local.dry_run:
        preview(spec, options)
    raise typer.Exit(run_study(spec, options, typer.echo, study_display(spec.name, where.quiet)))


def _join_command(name: str, help: str, worker: bool) -> None:
    @command(name, help=help)
    @with_groups(local=JoinOptions, where=Placement)
    def join(
        database: Database = None,
        storage: Storage = None,
        study: StudyName = None,
        *,
        local: JoinOptions,
        where: Placement,
    ) -> None:
        from bopsweep.driver.study import worker_index

        _join(database, storage, study, local, where, worker_index() if worker else 0)


_join_command(
    "resume",
    """Continue a study: trials interrupted (Ctrl-C, a killed driver) continue from their last
    checkpoint, then every queued trial runs. Finished trials are never re-run.""",
    worker=False,
)
_join_command(
    "worker",
    """Join a study from another machine (a shared PostgreSQL or MySQL --storage) and run its
    queued or sampled trials on this machine's GPUs (or CPU) until the study is done.

    Start one per machine; a configuration is completed once however many workers race for
    it. Trials of a worker that died are failed after --grace-period without a heartbeat and
    re-queued; they continue from their checkpoint where --checkpoint-dir is shared.""",
    worker=True,
)
