"""run_checks: a run's gate, promotion and drift outcome (issue 17), one row per run that had any."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("run_checks",
                    sa.Column("run_id", sa.String(length=32), nullable=False),
                    sa.Column("gate", sa.JSON(), nullable=True),
                    sa.Column("promotion", sa.JSON(), nullable=True),
                    sa.Column("drift", sa.JSON(), nullable=True),
                    sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
                    sa.PrimaryKeyConstraint("run_id"))


def downgrade() -> None:
    op.drop_table("run_checks")
