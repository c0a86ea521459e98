"""crm-intel: lead conversion, churn risk and attribution for CRMs.

Flow of data, one direction: CRM data (``crm_intel``) → ``features`` → ``training`` → ``serving``.
"""

__version__ = "0.1.0"
