"""The README's finance walkthrough runs as written: from the demo history to an issued PDF.

The lines are read from the README (the ``sh`` block after ``<!-- finance-walkthrough -->``)
and run by bash in a scratch directory that links the checkout's ``.venv`` and ``docs``,
so the relative paths work exactly as they do for a reader in a fresh clone. Only the
database URL is swapped for the test's (each engine in turn).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- finance-walkthrough -->", 1)[1]
    m = re.search(r"```sh\n(.*?)```", block, re.S)
    assert m, "the README lost its finance walkthrough"
    return m.group(1)


def pdf_text(path: Path) -> str:
    out = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.split())


def test_readme_finance_commands_run_as_written(db_url, tmp_path):
    script = walkthrough()
    assert "CARECALL_DB=sqlite:///var/finance-demo.db" in script
    script = script.replace("CARECALL_DB=sqlite:///var/finance-demo.db", f"CARECALL_DB={db_url}")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "docs").symlink_to(ROOT / "docs")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARECALL_")}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "history: 56 days" in out and "calls rung through FastAGI" in out
    assert "preview: nothing is issued; add --issue to issue" in out
    assert "invoice(s) issued, total £" in out
    invoices = tmp_path / "var" / "invoices"
    issued = sorted(p.name for p in invoices.glob("INV-*.pdf"))
    assert issued[:2] == ["INV-000001.pdf", "INV-000002.pdf"] and len(issued) == 5  # 4 Lewisham POs + R003
    first = pdf_text(invoices / "INV-000001.pdf")
    for expected in ("Riverside Home Care Ltd", "Company no. 09876543", "BILL TO", "London Borough of Lewisham",
                     "Invoice number INV-000001", "Purchase order PO-1001", "Total due £", "Sort code 20-00-00"):
        assert expected in first, expected
    private = pdf_text(invoices / "INV-000005.pdf")
    # R003 pays privately; the demo records her son as representative with a billing address.
    assert "BILL TO Paul White" in private and "9 Birch Way" in private and "Care for Cara White (R003)" in private
    assert "Purchase order PRIV-R003" in private
    csv_files = list(invoices.glob("invoices-*.csv"))
    assert len(csv_files) == 1 and csv_files[0].read_text().startswith("invoice_number,funder,purchase_order")
    assert list(invoices.glob("timesheet-R001-*.pdf"))
    [pay] = list((tmp_path / "var" / "pay").glob("pay-*.csv"))
    rows = pay.read_text().splitlines()
    assert rows[0].startswith("worker_number,worker_name,period_start") and len(rows) == 5  # four workers
    credit = pdf_text(invoices / "CN-000001.pdf")
    assert "Credit note number CN-000001" in credit and "Credits invoice INV-000002" in credit
