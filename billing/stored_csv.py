"""The CSV of a period's issued invoices, read from the frozen lines: in one process, or in several.

Why here and not in :mod:`billing.invoices`: the same reading is run by the CLI, the web
(into one response) and worker processes (each writes a piece of a big file), and none
needs the issue run's machinery.

Rows are read raw (:mod:`billing.rawio`): no ORM objects, local times sliced from the
stored text through a per-process cache of minutes, pence printed exactly. Each
invoice's lines are read by the ``(invoice_id, id)`` index, so the database never sorts
the whole period's lines. :func:`write` builds each line as text, every cell that comes
from data through ``ivr.csvsafe.cell_text`` (the formula guard, then csv's quoting).
The CLI and the web's download both use it.

The file is cut into pieces of about :data:`PIECE` lines, invoice by invoice in number
order (an invoice bigger than a piece is cut by line id), so memory holds a piece at a
time. From :data:`PARALLEL_FROM` lines, worker processes format the pieces through the
same :class:`LineReader` and the pieces are written out in order, at most two a worker
waiting (``parallel.in_order``): the file is byte for byte the one a single process
writes. Issued lines never change, so the workers need no shared snapshot.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import itertools
from collections.abc import Iterator
from typing import Any, TextIO

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.orm import Session, sessionmaker

from billing import parallel, rawio
from billing.models import Invoice, InvoiceLine, LineKind
from billing.queries import funders
from billing.rules import BillingConfig, local_clock
from carecall.config import Settings
from ivr import csvsafe
from ivr.db import make_engine, reading, session_factory

CSV_COLUMNS = ("invoice_number", "funder", "purchase_order", "resident_reference", "visit_ref", "worker_number",
               "arrival", "departure", "method", "billable_minutes", "rate", "amount")
PIECE = 10_000  # lines a worker formats at a time
PARALLEL_FROM = 4 * PIECE  # below this many lines one process is as quick


@dataclasses.dataclass(frozen=True)
class Piece:
    """Lines ``after < id <= upto`` (None: unbounded) of one invoice, printed under its number."""

    invoice_id: int
    label: str
    funder: str
    purchase_order: str
    after: int | None = None
    upto: int | None = None


def _in_csv(lines: Any) -> Any:
    """The lines the CSV lists: ledger lines with minutes or money (exceptions are on the PDF only)."""
    return lines.kind.in_(LineKind.LEDGER) & ((lines.billable_minutes != 0) | (lines.amount_pence != 0))


class _Pence(dict[int, str]):
    def __missing__(self, pence: int) -> str:
        text = self[pence] = rawio.pence_text(pence)
        return text


class LineReader:
    """The CSV rows of one piece, read raw on ``conn``."""

    def __init__(self, conn: Connection, config: BillingConfig) -> None:
        lines = InvoiceLine.__table__.c
        self.local = local_clock(config.tz).stored_minutes(conn.dialect.name)  # one cache per process
        whole = (select(lines.resident_reference, lines.visit_ref, lines.worker_number, lines.arrival_at,
                        lines.departure_at, lines.method, lines.billable_minutes, lines.rate_pence, lines.amount_pence)
                 .where(lines.invoice_id == bindparam("iid", 0), _in_csv(lines)).order_by(lines.id))
        # Ids are positive, so "after 0" is the whole invoice; an upper bound only for a cut piece.
        self.open = rawio.Query(conn, whole.where(lines.id > bindparam("after", 0)))
        self.closed = rawio.Query(conn, whole.where(lines.id > bindparam("after", 0),
                                                    lines.id <= bindparam("upto", 0)))
        self.data = csvsafe.Cells()  # references, names and methods repeat: each printed once
        self.money = _Pence()

    def _lines(self, piece: Piece) -> Iterator[Any]:
        after = piece.after or 0
        if piece.upto is None:
            return self.open.rows(iid=piece.invoice_id, after=after)
        return self.closed.rows(iid=piece.invoice_id, after=after, upto=piece.upto)

    def write(self, piece: Piece, out: TextIO) -> int:
        """The piece's rows as CSV text to ``out``; returns how many.

        Each line is built as text: the cells that come from data (references, funder,
        purchase order, method) through ``csvsafe.cell_text``, worked out once per value,
        the visit reference (unique) once per row; times, minutes and money are this
        module's own text, which neither the formula guard nor csv's quoting would change.
        ``tests/test_billing_parallel.py`` checks the file against the csv writer's.
        """
        local, data, money = self.local, self.data, self.money
        cell = csvsafe.cell_text
        head = f"{cell(piece.label)},{cell(piece.funder)},{cell(piece.purchase_order)},"
        text: list[str] = []
        append = text.append
        for ref, visit, worker, arrival, departure, method, minutes, rate, amount in self._lines(piece):
            append(f"{head}{data[ref]},{cell(visit)},{data[worker]},{local(arrival)},{local(departure)},{data[method]},"
                   f"{minutes},{money[rate]},{money[amount]}\n")
        out.write("".join(text))
        return len(text)


def _invoices(session: Session, config: BillingConfig, period_start: dt.date,
              funder: str | None) -> list[Piece]:
    """One whole-invoice piece per issued invoice of the period, in number order."""
    inv = Invoice.__table__.c
    names = [funder] if funder else funders(session)
    return [Piece(iid, config.invoice_number(number), f, po) for iid, number, f, po in session.execute(
        select(inv.id, inv.number, inv.funder, inv.purchase_order)
        .where(inv.period_start == period_start, inv.funder.in_(names)).order_by(inv.number))]


def _pieces(session: Session, whole: list[Piece]) -> tuple[list[list[Piece]], int]:
    """The invoices cut into tasks of about PIECE lines (big invoices cut by line id), and the line count.

    Lines of every kind are counted (exceptions too, which the CSV leaves out): the
    ``(invoice_id, id)`` index answers that alone, without reading a line.
    """
    lines = InvoiceLine.__table__.c
    counts: dict[int, int] = {}
    ids = [p.invoice_id for p in whole]
    for i in range(0, len(ids), 500):
        counts.update(session.execute(
            select(lines.invoice_id, func.count()).where(lines.invoice_id.in_(ids[i:i + 500]))
            .group_by(lines.invoice_id)).tuples().all())
    nth = rawio.Query(session.connection(), select(lines.id).where(lines.invoice_id == bindparam("iid", 0))
                      .order_by(lines.id).limit(1).offset(bindparam("skip", 0)))
    tasks: list[list[Piece]] = []
    task: list[Piece] = []
    size = 0
    for p in whole:
        n = counts.get(p.invoice_id, 0)
        if n > PIECE:
            if task:
                tasks.append(task)
                task, size = [], 0
            # The ids at every PIECE-th line cut this invoice; each cut is one index probe.
            cuts = [nth.first(iid=p.invoice_id, skip=k - 1)[0] for k in range(PIECE, n, PIECE)]
            bounds = [None, *cuts, None]
            tasks.extend([dataclasses.replace(p, after=lo, upto=hi)] for lo, hi in itertools.pairwise(bounds))
            continue
        task.append(p)
        size += n
        if size >= PIECE:
            tasks.append(task)
            task, size = [], 0
    if task:
        tasks.append(task)
    return tasks, sum(counts.values())


def write(factory: sessionmaker[Session], settings: Settings, period_start: dt.date, out: TextIO,
          funder: str | None = None, *, workers: int | None = None) -> int:
    """The period's issued-invoice CSV (header and rows) to ``out``; returns the number of rows.

    ``workers``: processes that format pieces (None: ``[billing] workers``, used for
    :data:`PARALLEL_FROM` lines or more; a number given here is used whatever the size, 0: none).
    """
    config = BillingConfig.from_settings(settings)
    writer = csvsafe.writer(out)
    writer.writerow(CSV_COLUMNS)
    with factory() as session:
        whole = _invoices(session, config, period_start, funder)
        tasks, total = _pieces(session, whole)
        count = parallel.worker_count(workers, config, lambda: total >= PARALLEL_FROM)
        if not count:
            reader = LineReader(session.connection(), config)
            return sum(reader.write(piece, out) for task in tasks for piece in task)
        url = parallel.database_url(session.connection())
    n = 0
    with parallel.process_pool(count, _start_worker, (url, config)) as pool:
        for _, formatted in parallel.in_order(pool, _format, ((task,) for task in tasks), 2 * count):
            text, rows_in_piece = formatted.result()
            out.write(text)
            n += rows_in_piece
    return n


# --- inside a worker process -----------------------------------------------------------------

_worker: dict[str, Any] = {}


def _start_worker(url: str, config: BillingConfig) -> None:
    parallel.worker_signals()
    _worker.update(factory=session_factory(make_engine(url)), config=config)


def _format(task: list[Piece]) -> tuple[str, int]:
    buf = io.StringIO()
    with reading(_worker["factory"]) as session:
        reader = LineReader(session.connection(), _worker["config"])
        n = sum(reader.write(piece, buf) for piece in task)
    return buf.getvalue(), n
