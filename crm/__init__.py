"""The CRM data layer, the ground floor: settings, the data contract, atomic I/O and importers.

Every other package may import this one; it imports none of them.
"""
