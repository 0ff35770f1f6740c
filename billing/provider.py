"""The ``[provider]`` table: who the invoice is from and how to pay it.

An accounts-payable team pays an invoice without a phone call only if it names the
supplier as registered (legal name, address, company and/or charity number), states the
VAT position (a VAT number, or that care services are exempt), and says where to send the
money and the remittance advice. Every key is optional so a new site can preview at
once; ``Provider.missing`` lists what an invoice would lack, and the CLI and the
Invoices page show it before anything is issued.
"""

from __future__ import annotations

import base64
import dataclasses
import mimetypes
import re
from pathlib import Path

from carecall.config import ConfigError, Settings, register_table

# Welfare services supplied by a state-regulated private welfare institution (a CQC-registered
# domiciliary care agency) are exempt: VAT Act 1994, Schedule 9, Group 7, item 9.
CARE_VAT_EXEMPTION = ("Care services are exempt from VAT (VAT Act 1994, Schedule 9, Group 7, item 9): "
                      "no VAT is charged.")
_SORT_CODE = re.compile(r"^\d{2}-\d{2}-\d{2}$")
_ACCOUNT = re.compile(r"^\d{8}$")
_VAT = re.compile(r"^GB ?\d{3} ?\d{4} ?\d{2}( ?\d{3})?$")
_COMPANY = re.compile(r"^(\d{8}|[A-Z]{2}\d{6})$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@register_table("provider")
@dataclasses.dataclass(frozen=True)
class Provider:
    """The care provider's letterhead and payment details, printed on every invoice and credit note."""

    legal_name: str = ""  # as registered at Companies House / the Charity Commission
    trading_name: str = ""  # if different ("trading as")
    address: tuple[str, ...] = ()  # lines, postcode last
    phone: str = ""
    email: str = ""  # finance queries
    company_number: str = ""  # 8 digits, or 2 letters + 6 digits (SC123456)
    charity_number: str = ""
    vat_number: str = ""  # GB + 9 digits; empty: the exemption statement is printed
    vat_statement: str = CARE_VAT_EXEMPTION
    bank_name: str = ""
    account_name: str = ""
    sort_code: str = ""  # 12-34-56
    account_number: str = ""  # 8 digits
    remittance_email: str = ""  # where remittance advice goes
    logo_file: str = ""  # PNG, JPEG or SVG; relative to data_dir unless absolute
    footer: str = ""  # e.g. "Registered in England and Wales. Registered office: …"

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"[provider] {key} {why}, got {getattr(self, key)!r}")

        if self.sort_code and not _SORT_CODE.match(self.sort_code):
            raise bad("sort_code", "must look like 12-34-56")
        if self.account_number and not _ACCOUNT.match(self.account_number):
            raise bad("account_number", "must be 8 digits")
        if self.vat_number and not _VAT.match(self.vat_number.upper()):
            raise bad("vat_number", "must be GB and 9 (or 12) digits")
        if self.company_number and not _COMPANY.match(self.company_number.upper()):
            raise bad("company_number", "must be 8 digits or 2 letters and 6 digits")
        for key in ("email", "remittance_email"):
            if getattr(self, key) and not _EMAIL.match(getattr(self, key)):
                raise bad(key, "must be an e-mail address")
        if self.logo_file and Path(self.logo_file).suffix.lower() not in (".png", ".jpg", ".jpeg", ".svg"):
            raise bad("logo_file", "must be a .png, .jpg or .svg file")

    @classmethod
    def from_settings(cls, settings: Settings) -> Provider:
        provider: Provider = settings.table("provider")
        if provider.logo_file and not Path(provider.logo_file).is_absolute():
            provider = dataclasses.replace(provider, logo_file=str(settings.path(provider.logo_file)))
        return provider

    @property
    def missing(self) -> list[str]:
        """What an invoice from this provider would lack for an accounts-payable team to pay it."""
        out = []
        if not self.legal_name:
            out.append("legal_name")
        if not self.address:
            out.append("address")
        if not (self.company_number or self.charity_number):
            out.append("company_number or charity_number")
        if not (self.sort_code and self.account_number and self.account_name):
            out.append("bank details (account_name, sort_code, account_number)")
        if not self.remittance_email:
            out.append("remittance_email")
        return out

    @property
    def vat_line(self) -> str:
        if self.vat_number:
            return f"VAT registration number {self.vat_number}. {self.vat_statement}"
        return self.vat_statement

    def logo_data_uri(self) -> str:
        """The logo inlined (the document's CSP allows only ``data:`` images); "" if none or unreadable."""
        if not self.logo_file:
            return ""
        try:
            data = Path(self.logo_file).read_bytes()
        except OSError:
            return ""
        kind = mimetypes.guess_type(self.logo_file)[0] or "image/png"
        return f"data:{kind};base64,{base64.b64encode(data).decode()}"
