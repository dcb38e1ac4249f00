"""The use cases (collect, publish, send, ...): the only code that imports the stages.

One module per use case, so a command imports only the stages it needs (`collect` never
loads the renderers or the SMTP code). Names resolve lazily: `pipeline.send` imports
`pipeline.sending` on first use. (No module shares a function's name: importing a
submodule sets the package attribute of that name.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names as mypy sees them; at run time __getattr__ finds them
    from publisher.pipeline.collection import collect as collect
    from publisher.pipeline.publication import PARALLEL_REBUILD_MIN as PARALLEL_REBUILD_MIN
    from publisher.pipeline.publication import publish as publish
    from publisher.pipeline.scheduling import JOB_NAMES as JOB_NAMES
    from publisher.pipeline.scheduling import check_send_ready as check_send_ready
    from publisher.pipeline.scheduling import delivery_backlog as delivery_backlog
    from publisher.pipeline.scheduling import exclusive as exclusive
    from publisher.pipeline.scheduling import job_runs as job_runs
    from publisher.pipeline.scheduling import open_job_store as open_job_store
    from publisher.pipeline.scheduling import record_job_run as record_job_run
    from publisher.pipeline.scheduling import schedule_status as schedule_status
    from publisher.pipeline.sending import add_subscriber as add_subscriber
    from publisher.pipeline.sending import delivery_status as delivery_status
    from publisher.pipeline.sending import export_subscribers as export_subscribers
    from publisher.pipeline.sending import failed_deliveries as failed_deliveries
    from publisher.pipeline.sending import import_subscribers as import_subscribers
    from publisher.pipeline.sending import list_subscribers as list_subscribers
    from publisher.pipeline.sending import remove_subscriber as remove_subscriber
    from publisher.pipeline.sending import send as send
    from publisher.pipeline.sending import unsubscribe as unsubscribe
    from publisher.pipeline.subscriptions import Subscriptions as Subscriptions
    from publisher.pipeline.subscriptions import confirm as confirm
    from publisher.pipeline.subscriptions import subscribe as subscribe
    from publisher.pipeline.subscriptions import subscriber_address as subscriber_address

_HOMES = {
    "collect": "collection",
    "publish": "publication",
    "PARALLEL_REBUILD_MIN": "publication",
    **dict.fromkeys(
        ("Subscriptions", "confirm", "subscribe", "subscriber_address"), "subscriptions"
    ),
    **dict.fromkeys(
        (
            "JOB_NAMES",
            "check_send_ready",
            "delivery_backlog",
            "exclusive",
            "job_runs",
            "open_job_store",
            "record_job_run",
            "schedule_status",
        ),
        "scheduling",
    ),
    **dict.fromkeys(
        (
            "add_subscriber",
            "delivery_status",
            "export_subscribers",
            "failed_deliveries",
            "import_subscribers",
            "list_subscribers",
            "remove_subscriber",
            "send",
            "unsubscribe",
        ),
        "sending",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'publisher.pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(f"publisher.pipeline.{home}"), name)
