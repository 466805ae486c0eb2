/**
 * The payment port. Keyport records money received; a provider is how it arrives. The `manual`
 * provider is an operator saying "this organization paid this much" (a bank transfer, a cheque,
 * an invoice paid elsewhere). A card processor fits the same port: `collect` starts a payment
 * (a Stripe Checkout session or PaymentIntent, answering the URL to send the customer to), and its
 * webhook handler, once the processor confirms, calls `BillingService.recordPayment` with the
 * processor's reference, so the same code marks invoices paid and grants prepaid credit.
 */

export interface PaymentRequest {
  organizationId: string;
  amountCents: number;
  currency: 'USD';
  /** An invoice to pay, or none for a prepaid top-up. */
  invoiceId: string | null;
  description: string;
}

export interface CollectResult {
  /** Where to send the payer to complete it (a hosted checkout page), if the provider has one. */
  redirectUrl: string | null;
  /** The provider's reference, recorded with the payment once it succeeds. */
  reference: string | null;
  /** True when the money is in hand now (manual); false when a confirmation will follow. */
  settled: boolean;
}

export interface PaymentProvider {
  readonly name: string;
  /** Starts collecting a payment. */
  collect(request: PaymentRequest): Promise<CollectResult>;
}

/**
 * Money an operator says was received: nothing to collect, it is settled when recorded. Who may
 * record it is the Admin API's business (the operator's admin keys only).
 */
export class ManualPaymentProvider implements PaymentProvider {
  readonly name = 'manual';
  async collect(): Promise<CollectResult> {
    return { redirectUrl: null, reference: null, settled: true };
  }
}
