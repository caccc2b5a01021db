"""PII redaction: e-mail addresses, phone numbers, IPv4 addresses and credit-card-like numbers become
placeholder tokens. RE2 patterns over the whole column; counts per document go to `pii_redactions`.

Patterns favour precision on technical text (dates, versions and hashes are not phone numbers), and
cards are matched by shape (13-19 digits in groups), not by Luhn checksum.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pydantic import Field

from tasks.records import Settings

OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
PATTERNS = {  # applied in this order: cards before phones, whose shapes overlap
    "email": (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", "<EMAIL>"),
    "credit_card": (r"\b[0-9]{4}(?:[ -]?[0-9]{4}){2}[ -]?[0-9]{1,7}\b", "<CREDIT_CARD>"),
    "ip_address": (rf"\b{OCTET}\.{OCTET}\.{OCTET}\.{OCTET}\b", "<IP_ADDRESS>"),
    "phone": (r"(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{2,4}\)[ .-]?|\b[0-9]{2,4}[ .-])[0-9]{3,4}[ .-][0-9]{3,4}\b", "<PHONE>"),
}


class PIISettings(Settings):
    enabled: bool = Field(True, description="replace personal data with placeholder tokens (counted in pii_redactions)")
    email: bool = Field(True, description="e-mail addresses become <EMAIL>")
    phone: bool = Field(True, description="phone numbers become <PHONE>")
    ip_address: bool = Field(True, description="IPv4 addresses become <IP_ADDRESS>")
    credit_card: bool = Field(True, description="13-19 digit card-shaped numbers become <CREDIT_CARD>")


def redact_texts(texts, settings: PIISettings):
    """(redacted texts, redactions per text)."""
    total = np.zeros(len(texts), dtype=np.int64)
    for kind, (pattern, token) in PATTERNS.items():
        if getattr(settings, kind):
            total += np.asarray(pc.count_substring_regex(texts, pattern), dtype=np.int64)
            texts = pc.replace_substring_regex(texts, pattern, token)
    return texts, total


def redact_pii(table: pa.Table, settings: PIISettings) -> pa.Table:
    """The table with PII replaced by placeholders (redaction rejects nothing)."""
    if not settings.enabled or table.num_rows == 0:
        return table
    texts, counts = redact_texts(table["text"], settings)
    table = table.set_column(table.schema.get_field_index("text"), "text", texts)
    return table.append_column("pii_redactions", pa.array(counts, pa.int64()))
