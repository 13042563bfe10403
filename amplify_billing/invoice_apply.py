"""The handlers sync-invoices applies its plan with: every executor's, plus the invoice ones, sharing what one
apply learns (the invoices Recurly made, the purchases it refused) (docs/architecture.md, "Executors")."""

from __future__ import annotations

from amplify_billing.actions import Action
from amplify_billing.amplify.invoice_executor import amplify_invoice_handlers
from amplify_billing.apply import Handler
from amplify_billing.collaborators import Phase
from amplify_billing.invoice_actions import RecurlyInvoice
from amplify_billing.recurly.invoice_executor import InvoiceOutcomes, invoice_handlers
from amplify_billing.recurly.invoices import InvoiceCalls, recurly_invoice


def sync_invoice_handlers(rt: Phase, outcomes: InvoiceOutcomes) -> dict[type[Action], Handler]:
    def invoice_of(invoice_id: str) -> RecurlyInvoice:
        """The invoice a payment names: this apply's create answer (no request), else read from Recurly."""
        made = outcomes.created.get(invoice_id)
        return made if made is not None else recurly_invoice(InvoiceCalls(rt.recurly()).get_invoice(invoice_id))

    return {
        **rt.handlers(),
        **invoice_handlers(rt.recurly, rt.journal, outcomes),
        **amplify_invoice_handlers(lambda: rt.amplify().resources, invoice_of, rt.clock),
    }
