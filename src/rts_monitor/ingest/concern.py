"""What ingestion brings: ``POST /api/agents/{id}/metrics`` and the group-commit pipeline."""

from rts_monitor.core.concern import Concern
from rts_monitor.ingest import pipeline, routes

CONCERN = Concern("ingest", routes=routes.HANDLERS, components=[pipeline.component])
