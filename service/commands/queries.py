"""query: the IoT Hub query language, every page."""

from __future__ import annotations

import click

from ..context import app_state, global_options
from ..errors import BadInput
from ..output import show_query_items


@click.command()
@click.argument("sql", metavar="QUERY")
@click.option("--top", type=click.IntRange(min=1), help="Stop after N items. Default: all of them.")
@click.option("--page-size", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="Items asked for per request (x-ms-max-item-count); continuation tokens fetch the rest.")
@global_options
def query(sql: str, top: int | None, page_size: int) -> None:
    """Run an IoT Hub QUERY and print every result, following continuation tokens.

    \b
    Examples:
      iothub-service query "SELECT * FROM devices WHERE tags.location = 'office'"
      iothub-service query "SELECT deviceId, properties.reported.rebootTime FROM devices" --top 10
      iothub-service query "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j1'"
    """
    if not sql.strip().lower().startswith("select"):
        raise BadInput("QUERY must start with SELECT, e.g. \"SELECT * FROM devices\"")
    state = app_state()
    items = state.hub().query(sql, top=top, page_size=page_size)
    out = state.output()
    out.json(items) if out.json_mode else show_query_items(out, items)
