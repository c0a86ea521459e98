"""CRM exports in their own shapes (Salesforce, HubSpot), mapped onto the contract and written
back out in those shapes. :func:`map_export` picks the format's module."""

from __future__ import annotations

from pathlib import Path

from crm.exports.common import MappedExport

FORMATS: tuple[str, ...] = ("contract", "salesforce", "hubspot", "maven")


def map_export(format_name: str, folder: Path, mapping_file: Path | None = None) -> MappedExport:
    """Map a ``salesforce`` or ``hubspot`` export folder onto the contract's tables."""
    if format_name == "salesforce":
        from crm.exports.salesforce import map_salesforce

        return map_salesforce(folder, mapping_file)
    if format_name == "hubspot":
        from crm.exports.hubspot import map_hubspot

        return map_hubspot(folder, mapping_file)
    raise ValueError(f"no mapped export format {format_name!r}")
