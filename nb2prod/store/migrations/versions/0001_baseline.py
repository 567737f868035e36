"""Baseline: the store's schema as releases before migrations created it (``create_all``, no version table).

Each table and index is created only where it is missing, so this one revision both creates a new store and
adopts one that such a release made (stamping it, with any table that release lacked added).
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _table(name: str, *columns, indexes: tuple[str, ...] = ()) -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table(name):
        op.create_table(name, *columns)
        inspector = sa.inspect(op.get_bind())
    have = {ix["name"] for ix in inspector.get_indexes(name)}
    for column in indexes:
        if f"ix_{name}_{column}" not in have:
            op.create_index(f"ix_{name}_{column}", name, [column], unique=False)


def upgrade() -> None:
    _table("nb2prod_meta",  # the schema version that releases before migrations check (they refuse > 1)
           sa.Column("key", sa.String(length=64), nullable=False),
           sa.Column("value", sa.Integer(), nullable=False),
           sa.PrimaryKeyConstraint("key"))
    meta = sa.table("nb2prod_meta", sa.column("key", sa.String), sa.column("value", sa.Integer))
    if op.get_bind().scalar(sa.select(meta.c.value).where(meta.c.key == "schema_version")) is None:
        op.bulk_insert(meta, [{"key": "schema_version", "value": 1}])
    _table("runs",
           sa.Column("id", sa.String(length=32), nullable=False),
           sa.Column("notebook", sa.Text(), nullable=False),
           sa.Column("notebook_sha256", sa.String(length=64), nullable=True),
           sa.Column("status", sa.String(length=16), nullable=False),
           sa.Column("origin", sa.String(length=16), nullable=False),
           sa.Column("created_at", sa.DateTime(), nullable=False),
           sa.Column("started_at", sa.DateTime(), nullable=True),
           sa.Column("ended_at", sa.DateTime(), nullable=True),
           sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
           sa.Column("pid", sa.Integer(), nullable=True),
           sa.Column("host", sa.String(length=255), nullable=True),
           sa.Column("parameters", sa.JSON(), nullable=False),
           sa.Column("options", sa.JSON(), nullable=False),
           sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
           sa.Column("mlflow_experiment_id", sa.String(length=64), nullable=True),
           sa.Column("tracking_uri", sa.Text(), nullable=True),
           sa.Column("error", sa.JSON(), nullable=True),
           sa.Column("cancel_requested", sa.Boolean(), nullable=False),
           sa.Column("resumed_from", sa.String(length=32), nullable=True),
           sa.Column("mlflow_closed", sa.Boolean(), nullable=False),
           sa.PrimaryKeyConstraint("id"),
           indexes=("created_at", "mlflow_run_id", "notebook", "status"))
    _table("run_stages",
           sa.Column("run_id", sa.String(length=32), nullable=False),
           sa.Column("name", sa.String(length=128), nullable=False),
           sa.Column("position", sa.Integer(), nullable=False),
           sa.Column("status", sa.String(length=16), nullable=False),
           sa.Column("started_at", sa.DateTime(), nullable=True),
           sa.Column("ended_at", sa.DateTime(), nullable=True),
           sa.Column("duration_s", sa.Float(), nullable=True),
           sa.Column("attempts", sa.Integer(), nullable=False),
           sa.Column("system_retries", sa.Integer(), nullable=False),
           sa.Column("cached_from", sa.String(length=32), nullable=True),
           sa.Column("cache_key", sa.String(length=64), nullable=True),
           sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
           sa.Column("error", sa.JSON(), nullable=True),
           sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
           sa.PrimaryKeyConstraint("run_id", "name"))
    _table("stage_attempts",
           sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
           sa.Column("run_id", sa.String(length=32), nullable=False),
           sa.Column("stage", sa.String(length=128), nullable=False),
           sa.Column("attempt", sa.Integer(), nullable=False),
           sa.Column("status", sa.String(length=16), nullable=False),
           sa.Column("started_at", sa.DateTime(), nullable=True),
           sa.Column("ended_at", sa.DateTime(), nullable=True),
           sa.Column("node", sa.String(length=64), nullable=True),
           sa.Column("error", sa.JSON(), nullable=True),
           sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
           sa.PrimaryKeyConstraint("id"),
           indexes=("run_id",))
    _table("schedules",
           sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
           sa.Column("name", sa.String(length=128), nullable=False),
           sa.Column("notebook", sa.Text(), nullable=False),
           sa.Column("cron", sa.String(length=128), nullable=False),
           sa.Column("timezone", sa.String(length=64), nullable=False),
           sa.Column("mode", sa.String(length=16), nullable=False),
           sa.Column("parameters", sa.JSON(), nullable=False),
           sa.Column("options", sa.JSON(), nullable=False),
           sa.Column("catchup", sa.String(length=8), nullable=False),
           sa.Column("catchup_max", sa.Integer(), nullable=False),
           sa.Column("max_concurrent", sa.Integer(), nullable=False),
           sa.Column("timeout_s", sa.Float(), nullable=True),
           sa.Column("retries", sa.Integer(), nullable=False),
           sa.Column("retry_backoff_s", sa.Float(), nullable=False),
           sa.Column("notify_url", sa.Text(), nullable=True),
           sa.Column("notify_command", sa.Text(), nullable=True),
           sa.Column("notify_on_success", sa.Boolean(), nullable=False),
           sa.Column("paused", sa.Boolean(), nullable=False),
           sa.Column("created_at", sa.DateTime(), nullable=False),
           sa.Column("considered_until", sa.DateTime(), nullable=False),
           sa.Column("next_fire_at", sa.DateTime(), nullable=True),
           sa.PrimaryKeyConstraint("id"),
           sa.UniqueConstraint("name"),
           indexes=("next_fire_at",))
    _table("schedule_fires",
           sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
           sa.Column("schedule_id", sa.Integer(), nullable=False),
           sa.Column("scheduled_time", sa.DateTime(), nullable=False),
           sa.Column("status", sa.String(length=16), nullable=False),
           sa.Column("reason", sa.Text(), nullable=True),
           sa.Column("claimed_by", sa.String(length=64), nullable=True),
           sa.Column("lease_until", sa.DateTime(), nullable=True),
           sa.Column("attempts", sa.Integer(), nullable=False),
           sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
           sa.Column("run_id", sa.String(length=32), nullable=True),
           sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
           sa.Column("notebook_sha256", sa.String(length=64), nullable=True),
           sa.Column("parameters", sa.JSON(), nullable=True),
           sa.Column("started_at", sa.DateTime(), nullable=True),
           sa.Column("ended_at", sa.DateTime(), nullable=True),
           sa.Column("error", sa.Text(), nullable=True),
           sa.ForeignKeyConstraint(["schedule_id"], ["schedules.id"], ondelete="CASCADE"),
           sa.PrimaryKeyConstraint("id"),
           sa.UniqueConstraint("schedule_id", "scheduled_time", name="one_fire_per_time"),
           indexes=("schedule_id", "status"))
    _table("schedule_fire_attempts",
           sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
           sa.Column("fire_id", sa.Integer(), nullable=False),
           sa.Column("attempt", sa.Integer(), nullable=False),
           sa.Column("run_id", sa.String(length=32), nullable=True),
           sa.Column("status", sa.String(length=16), nullable=False),
           sa.Column("started_at", sa.DateTime(), nullable=True),
           sa.Column("ended_at", sa.DateTime(), nullable=True),
           sa.Column("error", sa.Text(), nullable=True),
           sa.ForeignKeyConstraint(["fire_id"], ["schedule_fires.id"], ondelete="CASCADE"),
           sa.PrimaryKeyConstraint("id"),
           indexes=("fire_id",))
    _table("schedulers",
           sa.Column("id", sa.String(length=64), nullable=False),
           sa.Column("started_at", sa.DateTime(), nullable=False),
           sa.Column("seen_at", sa.DateTime(), nullable=False),
           sa.PrimaryKeyConstraint("id"),
           indexes=("seen_at",))

