"""Feast entities: the CRM objects features describe."""

from feast import Entity, ValueType

lead = Entity(
    name="lead",
    join_keys=["lead_id"],
    value_type=ValueType.STRING,
    description="A person the company markets and sells to (leads.lead_id).",
)
account = Entity(
    name="account",
    join_keys=["account_id"],
    value_type=ValueType.STRING,
    description="A company, prospect or customer (accounts.account_id).",
)
content = Entity(
    name="content",
    join_keys=["content_id"],
    value_type=ValueType.STRING,
    description="A piece of marketing content (content.content_id).",
)

ENTITIES = [lead, account, content]
